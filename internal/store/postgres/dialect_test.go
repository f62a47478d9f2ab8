package postgres

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
)

// TestTxStatus: the dialect's queries for a transaction's id and its fate,
// which the batcher uses when a COMMIT's answer is lost, tell committed
// from rolled-back transactions.
func TestTxStatus(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	db, err := Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	status := func(id string) string {
		t.Helper()
		var st string
		if err := other.QueryRow(ctx, db.dialect.TxStatus, id).Scan(&st); err != nil {
			t.Fatalf("TxStatus: %v", err)
		}
		return st
	}
	for _, commit := range []bool{true, false} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		if err := tx.QueryRow(ctx, db.dialect.TxID).Scan(&id); err != nil {
			t.Fatalf("TxID: %v", err)
		}
		if st := status(id); st != "in progress" {
			t.Errorf("open transaction %s: status %q", id, st)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "committed", false: "aborted"}[commit]; status(id) != want {
			t.Errorf("transaction %s: status %q, want %q", id, status(id), want)
		}
	}
}
