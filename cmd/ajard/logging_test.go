package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, secret, keep string }{
		{"postgres://ajar:s3cr%21t@db.example:5432/ajar?sslmode=require", "s3cr", "sslmode=require"},
		{"postgres://ajar@db.example/ajar?password=hunter2&sslmode=disable", "hunter2", "sslmode=disable"},
		{"postgresql://ajar@db.example/ajar?sslmode=verify-full&sslpassword=k3y-pass", "k3y-pass", "verify-full"},
		{"postgres://ajar@db.example/ajar?PASSWORD=Upper1", "Upper1", "db.example"},
		{"host=db.example user=ajar password=plain1 dbname=ajar", "plain1", "dbname=ajar"},
		{"host=db.example password = 'quoted secret' dbname=ajar", "quoted secret", "dbname=ajar"},
		{"host=db.example password='it\\'s' dbname=ajar", "it\\'s", "dbname=ajar"},
		{"postgres://ajar:bad%zzpw@db.example/ajar", "pw", "db.example"},
		{"sqlite:ajar-data/ajar.db", "\x00", "sqlite:ajar-data/ajar.db"},
	} {
		got := redactDSN(tc.dsn)
		if strings.Contains(got, tc.secret) || !strings.Contains(got, tc.keep) {
			t.Errorf("redactDSN(%q) = %q: want %q hidden and %q kept", tc.dsn, got, tc.secret, tc.keep)
		}
	}
}

func TestRedactError(t *testing.T) {
	for _, dsn := range []string{
		"postgres://ajar:pw-in-userinfo@db.example/ajar",
		"postgres://ajar@db.example/ajar?password=pw-in-query&sslmode=bogus",
		"host=db.example password=pw-in-kv sslmode=bogus",
	} {
		inner := fmt.Errorf("cannot parse `%s`: failed", dsn)
		err := redactError(fmt.Errorf("postgres: %w", inner), dsn)
		if strings.Contains(err.Error(), "pw-in-") {
			t.Errorf("error shows the password: %v", err)
		}
		if !errors.Is(err, inner) {
			t.Errorf("redacted error does not wrap the original")
		}
	}
}

// TestLogCutsLongValues checks that no logged value, whoever sent it,
// takes more than MaxLogValue bytes of the server's log.
func TestLogCutsLongValues(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("info", &buf)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("é", 1<<20)
	log.Warn("refused "+huge, "origin", huge, "err", errors.New(huge), "addr", stringer(huge), "n", 7)
	if buf.Len() > 8*MaxLogValue {
		t.Fatalf("one log line of %d bytes for four long values", buf.Len())
	}
	if !strings.Contains(buf.String(), "more bytes)") || !strings.Contains(buf.String(), "n=7") {
		t.Fatalf("log line: %s", buf.String())
	}
	if strings.Contains(buf.String(), "\ufffd") {
		t.Errorf("a value was cut inside a character")
	}
}

type stringer string

func (s stringer) String() string { return string(s) }
