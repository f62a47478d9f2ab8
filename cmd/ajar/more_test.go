package main

import (
	"bytes"
	"context"
	"database/sql"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestSSHWaitsAndExecs(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// A listener stands in for sshd on the VM.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	})
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod", "--address", "127.0.0.1")
	c.must("jit", "enable", "web", "--port", port+"/tcp", "--max", "10m")

	var gotPath string
	var gotArgv []string
	a := newApp(func(k string) string { return c.env[k] }, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	a.lookPath = func(string) (string, error) { return "/usr/bin/ssh", nil }
	a.exec = func(path string, argv, env []string) error {
		gotPath, gotArgv = path, argv
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.run(ctx, []string{"ssh", "web", "--port", port, "-l", "ops", "--for", "1m", "--", "-A", "uptime"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"ssh", "-l", "ops", "-p", port, "127.0.0.1", "-A", "uptime"}
	if gotPath != "/usr/bin/ssh" || !slices.Equal(gotArgv, want) {
		t.Errorf("exec %s %q, want %q", gotPath, gotArgv, want)
	}
	var gs valueList[struct {
		Port   int
		Status string
	}]
	c.json(&gs, "grants", "ls", "--vm", "web")
	if len(gs.Value) != 1 || strconv.Itoa(gs.Value[0].Port) != port || gs.Value[0].Status != "active" {
		t.Errorf("grants after ajar ssh: %+v", gs.Value)
	}

	// A port that never opens: a bounded wait, then an error.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := strconv.Itoa(ln2.Addr().(*net.TCPAddr).Port)
	ln2.Close()
	c.must("jit", "enable", "web", "--port", closed+"/tcp", "--max", "10m")
	err = a.run(ctx, []string{"ssh", "web", "--port", closed, "--wait", "1s"})
	if err == nil || !strings.Contains(err.Error(), "did not accept a connection") {
		t.Errorf("closed port: %v", err)
	}
	if err := a.run(ctx, []string{"ssh", "web", "extra"}); err == nil {
		t.Error("ssh with two VMs succeeded")
	}
}

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
