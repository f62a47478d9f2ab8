package lifecycletest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"github.com/ajarhq/ajar/internal/store/sqlite"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

// fixture reads testdata/schema-v.sql and counts its events.
func fixture(t *testing.T, v int) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("schema-%d.sql", v)))
	if err != nil {
		t.Fatalf("no fixture for schema version %d (%v): after appending a migration, run go run ./internal/store/lifecycletest/genfixture from the module's root and commit testdata", v, err)
	}
	return string(b), int64(strings.Count(string(b), "INSERT INTO events "))
}

// TestFixturesHoldTheMigrationsAsWritten checks that each fixture's schema
// is still the start of sqlstore.Migrations: migrations are only ever
// appended, never edited.
func TestFixturesHoldTheMigrationsAsWritten(t *testing.T) {
	for v := 1; v < len(sqlstore.Migrations); v++ {
		text, _ := fixture(t, v)
		for i, m := range sqlstore.Migrations[:v] {
			if !strings.Contains(text, strings.TrimRight(strings.TrimSpace(m), ";")+";\n") {
				t.Errorf("schema-%d.sql does not hold migration %d as it is now: migrations must never be edited, only appended", v, i+1)
			}
		}
	}
}

// TestUpgradeFromEveryEarlierVersion loads a database made by each earlier
// schema version, opens it with this ajard's store (which migrates it),
// and checks that its log verifies and it serves; on SQLite always, on
// PostgreSQL when AJAR_TEST_POSTGRES names a server.
func TestUpgradeFromEveryEarlierVersion(t *testing.T) {
	ctx := context.Background()
	for v := 1; v < len(sqlstore.Migrations); v++ {
		text, events := fixture(t, v)
		if events == 0 {
			t.Fatalf("schema-%d.sql holds no events", v)
		}
		t.Run(fmt.Sprintf("sqlite/v%d", v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ajar.db")
			raw, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = raw.Exec(text)
			raw.Close()
			if err != nil {
				t.Fatalf("load schema-%d.sql: %v", v, err)
			}
			st, err := sqlite.Open(ctx, path, Quiet)
			if err != nil {
				t.Fatalf("open a version %d database: %v", v, err)
			}
			defer st.Close()
			if err := CheckServes(ctx, st, events); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(fmt.Sprintf("postgres/v%d", v), func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(ctx, text)
			conn.Close(ctx)
			if err != nil {
				t.Fatalf("load schema-%d.sql: %v", v, err)
			}
			st, err := postgres.Open(ctx, dsn, Quiet)
			if err != nil {
				t.Fatalf("open a version %d database: %v", v, err)
			}
			defer st.Close()
			if err := CheckServes(ctx, st, events); err != nil {
				t.Fatal(err)
			}
		})
	}
}
