package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// openStore opens the database a --db value names. Its errors hide the
// DSN's passwords.
func openStore(ctx context.Context, dsn string, log *slog.Logger) (store.Store, error) {
	st, err := open(ctx, dsn, log)
	return st, redactError(err, dsn)
}

func open(ctx context.Context, dsn string, log *slog.Logger) (store.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("--db: sqlite: needs a file path, such as sqlite:ajar-data/ajar.db")
		}
		return sqlite.Open(ctx, path, log)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(ctx, dsn, log)
	}
	return nil, fmt.Errorf("--db: %q is not sqlite:PATH or postgres://...", redactDSN(dsn))
}
