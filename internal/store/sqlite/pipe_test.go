package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// A write connection dropped in the middle of a transaction (a COMMIT that
// failed, a BEGIN past its deadline) goes back to database/sql's pool: the
// next batch must not find that transaction still open ("cannot start a
// transaction within a transaction").
func TestDroppedConnLeavesNoTransaction(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "pipe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for i := range 2 {
		c, err := newConn(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `BEGIN IMMEDIATE`); err != nil {
			t.Fatalf("BEGIN on connection %d: %v", i, err)
		}
		if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS t (x INTEGER)`); err != nil {
			t.Fatal(err)
		}
		c.Close() // dropped without COMMIT or ROLLBACK
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 't'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a dropped connection's transaction committed: table t exists")
	}
}
