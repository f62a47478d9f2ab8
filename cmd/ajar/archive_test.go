package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestLogArchiveAndVerify archives the log twice through the CLI, proves
// genesis → archives → log with verify --archive, and catches an archive
// file that was edited or left out.
func TestLogArchiveAndVerify(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	dir := t.TempDir()
	c.must("group", "add", "a")
	c.must("group", "add", "b")
	time.Sleep(5 * time.Millisecond)
	cut := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(5 * time.Millisecond)
	c.must("group", "add", "c")

	first := filepath.Join(dir, "2026-01.jsonl")
	out := c.must("log", "archive", "--before", cut, "--to", first)
	if !strings.Contains(out, "Archived events 1 to ") || !strings.Contains(out, "The log now continues ") {
		t.Fatalf("log archive printed:\n%s", out)
	}
	// The file is never overwritten.
	if msg, _ := c.fails("log", "archive", "--before", cut, "--to", first); !strings.Contains(msg, "exists") {
		t.Errorf("archive onto an existing file: %s", msg)
	}
	// Nothing left before the cut.
	if out := c.must("log", "archive", "--before", cut, "--to", filepath.Join(dir, "none.jsonl")); !strings.Contains(out, "Nothing to archive") {
		t.Errorf("second archive printed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.jsonl")); !os.IsNotExist(err) {
		t.Errorf("an empty archive left a file: %v", err)
	}

	time.Sleep(5 * time.Millisecond)
	second := filepath.Join(dir, "2026-02.jsonl")
	c.must("log", "archive", "--before", time.Now().UTC().Format(time.RFC3339Nano), "--to", second)

	out = c.must("log", "verify")
	if !strings.Contains(out, "Activity log OK") || !strings.Contains(out, "continues the last archived event") {
		t.Errorf("log verify printed:\n%s", out)
	}
	// In any order.
	out = c.must("log", "verify", "--archive", second, first)
	if !strings.Contains(out, "Archives OK") || !strings.Contains(out, "Activity log OK") {
		t.Errorf("log verify --archive printed:\n%s", out)
	}
	// An anchor in the first archive is checked there.
	var firstEvent jit.Event
	b, _ := os.ReadFile(first)
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if err := json.Unmarshal(line, &firstEvent); err != nil {
		t.Fatal(err)
	}
	anchor := jit.Anchor{Seq: firstEvent.Seq, Hash: firstEvent.Hash}.String()
	c.must("log", "verify", "--anchor", anchor, "--archive", first, second)
	if msg, _ := c.fails("log", "verify", "--anchor", anchor); !strings.Contains(msg, "was archived") {
		t.Errorf("verify of an archived anchor without archives: %s", msg)
	}

	// An archive left out breaks the chain from the first event.
	if msg, _ := c.fails("log", "verify", "--archive", second); !strings.Contains(msg, "event 1 is missing") {
		t.Errorf("verify without the first archive: %s", msg)
	}
	// An edited archive does not verify.
	edited := bytes.Replace(b, []byte(`"actor":"admin"`), []byte(`"actor":"mallory"`), 1)
	if bytes.Equal(edited, b) {
		t.Fatal("nothing to edit in the archive")
	}
	if err := os.WriteFile(first, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, _ := c.fails("log", "verify", "--archive", first, second); !strings.Contains(msg, "archive verification failed") {
		t.Errorf("verify of an edited archive: %s", msg)
	}
}

// TestLogFollow reads ajar log --follow's JSON lines while changes are made.
func TestLogFollow(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "before")
	ctx, cancel := context.WithCancel(context.Background())
	r, w, _ := os.Pipe()
	var wg sync.WaitGroup
	var stderr bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		getenv := func(k string) string { return c.env[k] }
		run(ctx, []string{"log", "--follow", "--after", "0", "--op", "group.create"}, getenv, strings.NewReader(""), w, &stderr)
		w.Close()
	}()
	c.must("group", "add", "after-1")
	c.must("group", "add", "after-2")
	sc := bufio.NewScanner(r)
	var groups []string
	for len(groups) < 3 && sc.Scan() {
		var e struct {
			Seq       int64  `json:"seq"`
			Operation string `json:"operation"`
			Group     string `json:"group"`
			Details   struct {
				Name string `json:"name"`
			} `json:"details"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("follow line %q: %v", sc.Text(), err)
		}
		if e.Operation != "group.create" || e.Hash == "" {
			t.Fatalf("follow line: %s", sc.Text())
		}
		groups = append(groups, sc.Text())
	}
	cancel()
	wg.Wait()
	r.Close()
	if len(groups) != 3 || !strings.Contains(groups[0], "before") || !strings.Contains(groups[2], "after-2") {
		t.Fatalf("followed:\n%s\nstderr: %s", strings.Join(groups, "\n"), stderr.String())
	}
}
