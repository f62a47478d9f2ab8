package main

import (
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/ajarhq/ajar/internal/ajardtest"
)

func TestTLSFingerprintPinned(t *testing.T) {
	t.Parallel()
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--tls", "auto"}})
	fp := srv.Fingerprint()
	if !strings.HasPrefix(srv.URL, "https://") || fp == "" {
		t.Fatalf("server %s, fingerprint %q", srv.URL, fp)
	}
	c := &cli{t: t, srv: srv, env: map[string]string{"XDG_CONFIG_HOME": t.TempDir()}}

	// Self-signed: refused without the pin, and with a wrong one.
	c.fails("login", "--server", srv.URL, "--token", ajardtest.AdminToken)
	wrong := "sha256:" + strings.Repeat("00", 32)
	if msg, _ := c.fails("login", "--server", srv.URL, "--token", ajardtest.AdminToken, "--ca-fingerprint", wrong); !strings.Contains(msg, "fingerprint") {
		t.Errorf("wrong pin: %q", msg)
	}

	c.must("login", "--server", srv.URL, "--token", ajardtest.AdminToken, "--ca-fingerprint", fp)
	saved, err := (&app{getenv: func(k string) string { return c.env[k] }}).loadConfig()
	if err != nil || saved.Fingerprint != fp {
		t.Fatalf("saved config %+v, %v", saved, err)
	}
	c.must("group", "add", "prod")
	out := c.must("vm", "enroll-token", "--group", "prod")
	if !strings.Contains(out, "ajar-agent enroll --server "+srv.URL+" --token ajar_") || !strings.Contains(out, "--ca-fingerprint "+fp) {
		t.Errorf("enroll-token printed:\n%s", out)
	}
}
