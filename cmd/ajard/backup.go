package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// The backup and restore commands work on a SQLite database; PostgreSQL
// has its own tools (README, "Backup and restore").

// runBackup is `ajard backup --to FILE`: a consistent copy of the SQLite
// database, taken while ajard serves, checked before it is kept.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ajard backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", configuredDB(getenv), "the database to copy: sqlite:PATH (default: ajard's, from AJAR_DB or its config file)")
	to := fs.String("to", "", "the backup file to write (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("backup: unexpected argument %q", fs.Arg(0))
	}
	if *to == "" {
		return errors.New("backup: --to FILE is required")
	}
	path, err := sqlitePath(*db, "backup")
	if err != nil {
		return err
	}
	if _, err := os.Lstat(*to); err == nil {
		return fmt.Errorf("backup: --to: %s exists; backups are never overwritten", *to)
	}
	tmp := *to + ".partial"
	if err := sqlite.Backup(ctx, path, tmp); err != nil {
		return err
	}
	defer os.Remove(tmp)
	v, err := checkCopy(ctx, tmp)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Link(tmp, *to); err != nil {
		return fmt.Errorf("backup: --to: %w", err)
	}
	fmt.Fprintf(stdout, "Backed up %s to %s.\n", path, *to)
	printLog(stdout, v)
	return nil
}

// runRestore is `ajard restore FILE`: it puts a backup in place of the
// configured SQLite database once its chain verifies, never over a
// database in use, and over an existing one only with --force (the old
// one is kept beside it).
func runRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ajard restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", configuredDB(getenv), "the database to restore into: sqlite:PATH (default: ajard's, from AJAR_DB or its config file)")
	force := fs.Bool("force", false, "replace an existing database (kept as PATH.before-restore-TIME)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("restore: give one backup file: ajard restore [--db sqlite:PATH] [--force] FILE")
	}
	from := fs.Arg(0)
	path, err := sqlitePath(*db, "restore")
	if err != nil {
		return err
	}
	if err := sqlite.CheckFile(from); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	exists := false
	if _, err := os.Stat(path); err == nil {
		exists = true
		busy, err := sqlite.InUse(path)
		if err != nil {
			return fmt.Errorf("restore: %s: %w", path, err)
		}
		if busy {
			return fmt.Errorf("restore: %s is in use (is ajard running on it?): stop ajard first", path)
		}
		if !*force {
			return fmt.Errorf("restore: %s exists: give --force to replace it (it is kept as %s.before-restore-TIME)", path, filepath.Base(path))
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// Check a copy next to the target (checking opens the database,
	// which may bring its schema up to date), then move it in place.
	tmp := path + ".restoring"
	os.Remove(tmp)
	if err := copyFile(from, tmp); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	v, err := checkCopy(ctx, tmp)
	if err != nil {
		return fmt.Errorf("restore: refused: %w", err)
	}
	if exists {
		old := path + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		// The write-ahead log goes with it (it may hold the last
		// commits of an ajard that stopped uncleanly); the shared-memory
		// index is rebuilt from it.
		for _, suffix := range []string{"-wal", ""} {
			if err := os.Rename(path+suffix, old+suffix); err != nil && (suffix == "" || !errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("restore: %w", err)
			}
		}
		if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore: %w", err)
		}
		fmt.Fprintf(stdout, "Kept the database it replaces as %s.\n", old)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(stdout, "Restored %s from %s.\n", path, from)
	printLog(stdout, v)
	return nil
}

// checkCopy opens a copied database (bringing its schema up to date) and
// verifies its activity log; a broken chain is an error.
func checkCopy(ctx context.Context, path string) (jit.Verification, error) {
	st, err := sqlite.Open(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return jit.Verification{}, err
	}
	v, err := control.VerifyLog(ctx, st, nil)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v, fmt.Errorf("verify the copy's activity log: %w", err)
	}
	if !v.OK {
		bad := int64(0)
		if v.FirstBadEvent != nil {
			bad = *v.FirstBadEvent
		}
		return v, fmt.Errorf("the copy's activity log does not verify: event %d: %s", bad, v.Problem)
	}
	return v, nil
}

func printLog(w io.Writer, v jit.Verification) {
	fmt.Fprintf(w, "Activity log OK: %d events, hash chain intact.\n", v.Events)
	if v.ArchivedThrough != nil {
		fmt.Fprintf(w, "It continues the last archived event %s.\n", v.ArchivedThrough)
	}
	if v.Head != nil {
		fmt.Fprintf(w, "Head: %s\n", v.Head)
	}
}

// defaultDB is the database when neither --db, AJAR_DB nor the config
// file names one.
const defaultDB = "sqlite:ajar-data/ajar.db"

// configuredDB is the database ajard would open: from AJAR_DB (or
// AJAR_DB_FILE), the config file (AJAR_CONFIG or /etc/ajar/ajard.toml) or
// the default. A config that does not load leaves AJAR_DB or the default.
func configuredDB(getenv func(string) string) string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	path := fs.String("config", DefaultConfigFile, "")
	c, err := loadConfig(nil, configFile(fs, *path, getenv), getenv, io.Discard)
	if err != nil {
		return envOr(getenv, "AJAR_DB", defaultDB)
	}
	return c.db
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// sqlitePath returns the path of a sqlite: --db value.
func sqlitePath(dsn, cmd string) (string, error) {
	path, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok {
		return "", fmt.Errorf("%s: --db %q is not sqlite:PATH; for PostgreSQL use pg_dump and pg_restore (README, \"Backup and restore\")", cmd, redactDSN(dsn))
	}
	if path == "" {
		return "", fmt.Errorf("%s: --db: sqlite: needs a file path", cmd)
	}
	return path, nil
}

// copyFile copies from into a new file to (0600) and syncs it.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
