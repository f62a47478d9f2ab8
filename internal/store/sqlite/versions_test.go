package sqlite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

// TestOlderServerRefusesNewerSchema opens a database with this version's
// schema, then as a server one version older: it refuses, naming both.
func TestOlderServerRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(t.TempDir(), "ajar.db")
	n := len(sqlstore.Migrations)
	// An older server makes the database; this one migrates it.
	old, err := open(ctx, path, quiet, sqlstore.Migrations[:n-1])
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	db, err := Open(ctx, path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = open(ctx, path, quiet, sqlstore.Migrations[:n-1])
	if err == nil {
		t.Fatal("an older server opened a newer schema")
	}
	for _, want := range []string{fmt.Sprintf("version %d", n), fmt.Sprintf("version %d", n-1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
}
