// Package pgtest gives tests a fresh PostgreSQL database on the server
// named by AJAR_TEST_POSTGRES (scripts/test.sh starts one). Without it the
// tests skip, except under CI=true, where they fail: CI must run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// NewDatabase creates an empty database on the AJAR_TEST_POSTGRES server,
// dropped when the test ends, and returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("AJAR_TEST_POSTGRES")
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AJAR_TEST_POSTGRES is unset; CI must run the PostgreSQL tests (scripts/test.sh starts a cluster)")
		}
		t.Skip("AJAR_TEST_POSTGRES is unset: source scripts/postgres-test-cluster.sh (or run scripts/test.sh) to run the PostgreSQL tests")
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "ajar_test_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to AJAR_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatalf("AJAR_TEST_POSTGRES: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return admin + " dbname=" + name // key=value: the last one wins
}
