// Command genfixture writes the upgrade tests' fixtures: for each schema
// version before the current one that has none, testdata/schema-N.sql, an
// ajar database of that version as SQL text (the first N migrations, then
// the rows a small population through the control plane leaves, in that
// version's tables and columns). Run it from the module's root after
// appending a migration, and commit what it writes:
//
//	go run ./internal/store/lifecycletest/genfixture
//
// or go generate ./internal/store/lifecycletest. Existing fixtures are
// kept: they are what earlier versions made. The current version gets none
// until a migration follows it: until then it may still change.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ajarhq/ajar/internal/store/lifecycletest"
	"github.com/ajarhq/ajar/internal/store/sqlite"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

func main() {
	dir := flag.String("dir", "internal/store/lifecycletest/testdata", "the fixtures' folder")
	flag.Parse()
	if err := run(context.Background(), *dir); err != nil {
		fmt.Fprintln(os.Stderr, "genfixture:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%w (run it from the module's root)", err)
	}
	tmp, err := os.MkdirTemp("", "genfixture")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "full.db")
	st, err := sqlite.Open(ctx, path, lifecycletest.Quiet)
	if err != nil {
		return err
	}
	err = lifecycletest.Populate(ctx, st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("populate: %w", err)
	}
	full, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer full.Close()
	for v := 1; v < len(sqlstore.Migrations); v++ {
		name := filepath.Join(dir, fmt.Sprintf("schema-%d.sql", v))
		if _, err := os.Stat(name); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		var b bytes.Buffer
		if err := lifecycletest.Dump(ctx, full, v, &b); err != nil {
			return err
		}
		if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", name)
	}
	return nil
}
