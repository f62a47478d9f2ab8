package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

// TestReplicasOfMixedVersions runs a replica one schema version behind,
// starts a newer one (which migrates the shared database while the older
// serves on), and checks that an older replica started after that
// refuses the database, naming both versions.
func TestReplicasOfMixedVersions(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := len(sqlstore.Migrations)
	older := sqlstore.Migrations[:n-1]

	old, err := open(ctx, dsn, quiet, older)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	write := func(db *DB, name string) error {
		return db.Update(ctx, func(tx store.Tx) error {
			if err := tx.CreateGroup(jit.Group{Name: name, CreatedAt: time.Now()}); err != nil {
				return err
			}
			return tx.AppendEvent(&jit.Event{Time: time.Now(), Actor: "test", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess})
		})
	}
	// (This code's log reads its checkpoint when the log is empty, which
	// an older ajard's code would not: the older replica's first write
	// appends no event.)
	if err := old.Update(ctx, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "before", CreatedAt: time.Now()}) }); err != nil {
		t.Fatal(err)
	}

	newer, err := Open(ctx, dsn, quiet)
	if err != nil {
		t.Fatalf("a newer replica did not migrate: %v", err)
	}
	defer newer.Close()
	var have int
	conn, err := newPipe(ctx, newer.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT MAX(version) FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		rows.Scan(&have)
	}
	rows.Close()
	conn.Close()
	if have != n {
		t.Fatalf("schema version %d after the newer replica started, want %d", have, n)
	}
	// Both serve.
	if err := write(newer, "new-after"); err != nil {
		t.Fatal(err)
	}
	if err := write(old, "old-after"); err != nil {
		t.Fatalf("the running older replica failed after the upgrade: %v", err)
	}
	var groups []jit.Group
	if err := old.View(ctx, func(tx store.Tx) error { var err error; groups, err = tx.ListGroups(); return err }); err != nil || len(groups) != 3 {
		t.Fatalf("groups read by the older replica: %v %v", groups, err)
	}

	// An older replica starting now refuses, naming both versions.
	again, err := open(ctx, dsn, quiet, older)
	if err == nil {
		again.Close()
		t.Fatal("an older replica started on a newer schema")
	}
	for _, want := range []string{fmt.Sprintf("version %d", n), fmt.Sprintf("version %d", n-1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
}
