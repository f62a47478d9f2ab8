package main

import (
	"database/sql"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

func TestLogVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod")
	c.must("log", "verify")

	c.srv.Stop()
	db, err := sql.Open("sqlite", strings.TrimPrefix(c.srv.DB, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE events SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	c.srv.Restart()

	out, stderr, err := c.run("log", "verify")
	if err == nil {
		t.Fatalf("log verify passed a tampered log:\n%s", out)
	}
	if !strings.Contains(out, "FAILED at event 2") || !strings.Contains(out, "mallory") {
		t.Errorf("log verify printed:\n%s", out)
	}
	if !strings.HasPrefix(stderr, "ajar: activity log verification failed at event 2") {
		t.Errorf("stderr: %q", stderr)
	}
}
