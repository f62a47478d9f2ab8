package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// countingStore counts the transactions run on a real store.
type countingStore struct {
	store.Store
	updates, views atomic.Int64
	// gate, when set, holds every View until it is closed.
	gate atomic.Pointer[chan struct{}]
}

func (s *countingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	s.views.Add(1)
	if g := s.gate.Load(); g != nil {
		<-*g
	}
	return s.Store.View(ctx, fn)
}

func (s *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

// TestHeartbeatsCoalesced: five agents report every 30 s to replica A;
// their heartbeats cost one write per flush, not one each; what a report
// changes is written at once; replica B, sharing the database, never takes
// a live agent for offline, and marks the agents offline within
// AgentOfflineAfter plus one tick of their last report once they stop.
func TestHeartbeatsCoalesced(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &countingStore{Store: db}
	clk := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	a := control.New(st, log, clk.now)
	b := control.New(st, log, clk.now)
	secret, err := a.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.Authenticate(ctx, secret, netip.MustParseAddr("198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateGroup(ctx, admin, "prod"); err != nil {
		t.Fatal(err)
	}
	var agents []*control.Actor
	var vms []string
	for _, name := range []string{"web-1", "web-2", "web-3", "web-4", "web-5"} {
		e := enroll(t, a, admin, name)
		ag, err := a.Authenticate(ctx, e.Secret, netip.MustParseAddr("198.51.100.10"))
		if err != nil {
			t.Fatal(err)
		}
		agents, vms = append(agents, ag), append(vms, e.VM.ID)
	}
	report := func(ag *control.Actor, port int) {
		t.Helper()
		if err := a.Report(ctx, ag, jit.Report{Enforceable: true, Hostname: "h", Listening: []jit.Socket{{Protocol: "TCP", Port: port}}}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(vmID string) *jit.Report {
		t.Helper()
		v, err := a.GetVM(ctx, admin, vmID)
		if err != nil {
			t.Fatal(err)
		}
		return v.Report
	}
	tick := func() (flushed, marked int) {
		t.Helper()
		flushed, err := a.FlushReports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*control.Control{b, a} {
			m, err := c.MarkSilentAgents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			marked += m
		}
		return flushed, marked
	}

	for _, ag := range agents {
		report(ag, 22) // first contact: written at once
	}
	const rounds = 20 // ten minutes of heartbeats
	before := st.updates.Load()
	for range rounds {
		clk.add(30 * time.Second)
		for _, ag := range agents {
			report(ag, 22)
		}
		if flushed, marked := tick(); flushed != len(agents) || marked != 0 {
			t.Fatalf("a round of heartbeats: %d flushed, %d marked offline; want %d and 0", flushed, marked, len(agents))
		}
		if got := stored(vms[0]).Time; !got.Equal(clk.now()) {
			t.Fatalf("stored heartbeat time %v after the flush, want %v", got, clk.now())
		}
	}
	// Per round: one flush and the two replicas' offline checks.
	if got := st.updates.Load() - before; got > 3*rounds {
		t.Errorf("%d rounds of %d heartbeats took %d write transactions; want at most %d", rounds, len(agents), got, 3*rounds)
	}

	// A report that says something new is written at once.
	clk.add(10 * time.Second)
	report(agents[0], 2222)
	if r := stored(vms[0]); len(r.Listening) != 1 || r.Listening[0].Port != 2222 || !r.Time.Equal(clk.now()) {
		t.Fatalf("changed report not written at once: %+v", r)
	}

	// The agents stop: they are marked offline within one tick of
	// AgentOfflineAfter.
	last := clk.now()
	marked := 0
	for marked < len(agents) {
		clk.add(30 * time.Second)
		_, m := tick()
		marked += m
		if clk.now().Sub(last) > jit.AgentOfflineAfter+30*time.Second+10*time.Second {
			t.Fatalf("%d of %d silent agents marked offline %v after their last report", marked, len(agents), clk.now().Sub(last))
		}
	}
	// Coming back logs a connect event at once.
	report(agents[1], 22)
	if r := stored(vms[1]); r.Disconnected || !r.Time.Equal(clk.now()) {
		t.Fatalf("report after a silence: %+v", r)
	}
	if d, c := events(t, a, admin, jit.OpAgentDisconnect), events(t, a, admin, jit.OpAgentConnect); len(d) != len(agents) || len(c) != len(agents)+1 {
		t.Fatalf("%d disconnect and %d connect events, want %d and %d", len(d), len(c), len(agents), len(agents)+1)
	}
}
