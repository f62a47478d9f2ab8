package gcpfw

// The tests drive the real SDK clients (REST transport) against
// computefake, the stateful in-memory Compute Engine API.

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/gcpfw/computefake"
	"github.com/ajarhq/ajar/internal/jit"
)

const (
	project = "shop-prod"
	zone    = "europe-west1-b"
)

type fakeGCP struct {
	*computefake.Compute
	t testing.TB
}

func newFake(t testing.TB) *fakeGCP {
	return &fakeGCP{Compute: computefake.New(t), t: t}
}

// client returns a Client whose SDK clients talk to f, retrying fast,
// closed when the test ends.
func (f *fakeGCP) client() *Client {
	c := f.newClient()
	f.t.Cleanup(func() { c.Close() })
	return c
}

// newClient is client for a caller that closes it.
func (f *fakeGCP) newClient() *Client {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	c, err := NewClient(context.Background(), testLogger(f.t), now, f.ClientOptions()...)
	if err != nil {
		f.t.Fatal(err)
	}
	c.Retry = Backoff{Attempts: 6, Initial: time.Millisecond, Max: 5 * time.Millisecond}
	c.OpPoll = time.Millisecond
	return c
}

func (f *fakeGCP) enforcer() *Enforcer { return NewEnforcer(f.client(), testLogger(f.t)) }

func gcpVM(name string) jit.VM {
	return jit.VM{ID: "vm-" + name, Name: name, Group: project, Backend: jit.BackendGCP,
		ExternalID: "projects/" + project + "/zones/" + zone + "/instances/" + name}
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
