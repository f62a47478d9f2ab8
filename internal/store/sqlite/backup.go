package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
)

// Backup writes a consistent copy of the database at path into dest, a
// new file, while other connections (a serving ajard) go on reading and
// writing: VACUUM INTO copies one read snapshot. dest is created 0600.
func Backup(ctx context.Context, path, dest string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", dsnOf(path, "busy_timeout(10000)"))
	if err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup: open %s: %w", path, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup: copy %s: %w", path, err)
	}
	return nil
}

// InUse reports whether a process has the database at path open (a
// serving ajard): it tries, without waiting, to lock the file for itself.
func InUse(path string) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		return false, err
	}
	db, err := sql.Open("sqlite", dsnOf(path, "busy_timeout(0)", "locking_mode(EXCLUSIVE)"))
	if err != nil {
		return false, err
	}
	defer db.Close()
	_, err = db.Exec(`BEGIN EXCLUSIVE; COMMIT`)
	if err != nil && down(err) {
		return true, nil
	}
	return false, err
}

func dsnOf(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

// ErrNotSQLite is returned for a file that is not a SQLite database.
var ErrNotSQLite = jit.Errorf(jit.EInvalid, "not a SQLite database")

// CheckFile reports whether the file at path is a SQLite database, by its
// header, without opening it (opening would create or change it).
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 16)
	if _, err := f.Read(head); err != nil || !strings.HasPrefix(string(head), "SQLite format 3\x00") {
		return fmt.Errorf("%s: %w", path, ErrNotSQLite)
	}
	return nil
}
