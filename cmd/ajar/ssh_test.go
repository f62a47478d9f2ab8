package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

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
