package logarchive

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// chain returns n chained events from genesis, their details in the
// form the store hashes (json.Marshal's: compact, HTML-escaped), which
// every JSON export writes back unchanged.
func chain(n int) []jit.Event {
	var out []jit.Event
	prev := ""
	details, _ := json.Marshal(json.RawMessage(`{ "x": "<&>" }`))
	for i := 1; i <= n; i++ {
		e := jit.Event{Seq: int64(i), Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Actor: "a", Operation: jit.OpGroupCreate,
			Outcome: jit.OutcomeSuccess, Details: details, PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func writeEvents(evs []jit.Event) func(io.Writer) error {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for i := range evs {
			if err := enc.Encode(&evs[i]); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestWriteAndVerify(t *testing.T) {
	dir := t.TempDir()
	evs := chain(10)
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	fa, err := Write(a, writeEvents(evs[:4]))
	if err != nil || fa.First != 1 || fa.Events != 4 || fa.Head.Seq != 4 {
		t.Fatalf("write a: %+v %v", fa, err)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("a: %v %v", fi, err)
	}
	if _, err := Write(a, writeEvents(evs[:4])); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("overwrite: %v", err)
	}
	if _, err := Write(b, writeEvents(evs[4:])); err != nil {
		t.Fatal(err)
	}
	head, n, err := Verify([]string{b, a}, &jit.Anchor{Seq: 3, Hash: evs[2].Hash})
	if err != nil || n != 10 || head.Seq != 10 || head.Hash != evs[9].Hash {
		t.Fatalf("verify: %v %d %v", head, n, err)
	}
	// Without the first file the chain does not start at event 1.
	if _, _, err := Verify([]string{b}, nil); err == nil || !strings.Contains(err.Error(), "event 1 is missing") {
		t.Errorf("verify without the first archive: %v", err)
	}
	// An anchor that does not match.
	if _, _, err := Verify([]string{a, b}, &jit.Anchor{Seq: 3, Hash: evs[1].Hash}); err == nil {
		t.Error("verify passed a wrong anchor")
	}
	// An empty export leaves no file; a broken one is refused.
	if f, err := Write(filepath.Join(dir, "empty.jsonl"), writeEvents(nil)); err != nil || f.Events != 0 {
		t.Fatalf("empty: %+v %v", f, err)
	}
	bad := chain(3)
	bad[1].Actor = "mallory"
	if _, err := Write(filepath.Join(dir, "bad.jsonl"), writeEvents(bad)); err == nil || !strings.Contains(err.Error(), "event 2") {
		t.Errorf("broken archive: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 2 {
		t.Errorf("files left: %v", left)
	}
	// Not JSON lines.
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello\n"), 0o600)
	if _, err := Read(junk); err == nil || !strings.Contains(err.Error(), "junk:1") {
		t.Errorf("junk: %v", err)
	}
}
