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

// replicas are two servers sharing one SQLite database and a clock.
type replicas struct {
	st     *countingStore
	clk    *clock
	a, b   *control.Control
	admin  *control.Actor
	agents []*control.Actor
	vms    []string
}

func newReplicas(t *testing.T, names ...string) *replicas {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &replicas{st: &countingStore{Store: db}, clk: &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}}
	r.a = control.New(r.st, log, r.clk.now)
	r.b = control.New(r.st, log, r.clk.now)
	secret, err := r.a.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.admin, err = r.a.Authenticate(ctx, secret, netip.MustParseAddr("198.51.100.7")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.CreateGroup(ctx, r.admin, "prod"); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		e := enroll(t, r.a, r.admin, name)
		ag, err := r.a.Authenticate(ctx, e.Secret, netip.MustParseAddr("198.51.100.10"))
		if err != nil {
			t.Fatal(err)
		}
		r.agents, r.vms = append(r.agents, ag), append(r.vms, e.VM.ID)
	}
	return r
}

func (r *replicas) stored(t *testing.T, vmID string) *jit.Report {
	t.Helper()
	v, err := r.a.GetVM(context.Background(), r.admin, vmID)
	if err != nil {
		t.Fatal(err)
	}
	return v.Report
}

// tick is what RunPresence does on A, and the offline check of both.
func (r *replicas) tick(t *testing.T) (flushed, marked int) {
	t.Helper()
	ctx := context.Background()
	flushed, err := r.a.FlushReports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*control.Control{r.b, r.a} {
		m, err := c.MarkSilentAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		marked += m
	}
	return flushed, marked
}

// TestHeartbeatsCoalesced: five agents of the previous version report
// every 30 s to replica A; their heartbeats cost no write of their own,
// only a flush of all five once their stored time is 80 s old; an
// applied revision is written by the next flush; what changes on the host
// is written at once; replica B, sharing the database, never takes a live
// agent for offline, and marks the agents offline within AgentOfflineAfter
// plus one tick of their last report once they stop.
func TestHeartbeatsCoalesced(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t, "web-1", "web-2", "web-3", "web-4", "web-5")
	report := func(ag *control.Actor, port int, rev int64) {
		t.Helper()
		if err := r.a.Report(ctx, ag, jit.Report{Enforceable: true, Hostname: "h", AppliedRevision: rev, Listening: []jit.Socket{{Protocol: "TCP", Port: port}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ag := range r.agents {
		report(ag, 22, 1) // first contact: written at once
	}
	const rounds = 20 // ten minutes of heartbeats
	before := r.st.updates.Load()
	for range rounds {
		r.clk.add(30 * time.Second)
		for _, ag := range r.agents {
			report(ag, 22, 1)
		}
		flushed, marked := r.tick(t)
		if marked != 0 || flushed != 0 && flushed != len(r.agents) {
			t.Fatalf("a round of heartbeats: %d flushed, %d marked offline; want all or none and 0", flushed, marked)
		}
		if age := r.clk.now().Sub(r.stored(t, r.vms[0]).Time); age >= jit.AgentOfflineAfter*2/3+30*time.Second {
			t.Fatalf("stored heartbeat %v old after the flush", age)
		}
	}
	// Per round: at most one flush, and the two replicas' offline checks.
	if got := r.st.updates.Load() - before; got > 3*rounds {
		t.Errorf("%d rounds of %d heartbeats took %d write transactions; want at most %d", rounds, len(r.agents), got, 3*rounds)
	}

	// A new applied revision waits for the next flush, which writes all
	// of them in one transaction.
	r.clk.add(10 * time.Second)
	before = r.st.updates.Load()
	for _, ag := range r.agents {
		report(ag, 22, 2)
	}
	if got := r.st.updates.Load() - before; got != 0 {
		t.Fatalf("reports with a new applied revision took %d writes of their own", got)
	}
	if flushed, err := r.a.FlushReports(ctx); err != nil || flushed != len(r.agents) || r.st.updates.Load()-before != 1 {
		t.Fatalf("flush after new revisions: %d written, %v, %d transactions; want %d in one", flushed, err, r.st.updates.Load()-before, len(r.agents))
	}
	if got := r.stored(t, r.vms[3]); got.AppliedRevision != 2 || !got.Time.Equal(r.clk.now()) {
		t.Fatalf("stored report after the flush: %+v", got)
	}

	// A report that says something new about the host is written at once.
	r.clk.add(10 * time.Second)
	report(r.agents[0], 2222, 2)
	if got := r.stored(t, r.vms[0]); len(got.Listening) != 1 || got.Listening[0].Port != 2222 || !got.Time.Equal(r.clk.now()) {
		t.Fatalf("changed report not written at once: %+v", got)
	}

	// The agents stop: they are marked offline within one tick of
	// AgentOfflineAfter.
	last := r.clk.now()
	marked := 0
	for marked < len(r.agents) {
		r.clk.add(30 * time.Second)
		_, m := r.tick(t)
		marked += m
		if r.clk.now().Sub(last) > jit.AgentOfflineAfter+30*time.Second+10*time.Second {
			t.Fatalf("%d of %d silent agents marked offline %v after their last report", marked, len(r.agents), r.clk.now().Sub(last))
		}
	}
	// Coming back logs a connect event at once.
	report(r.agents[1], 22, 2)
	if got := r.stored(t, r.vms[1]); got.Disconnected || !got.Time.Equal(r.clk.now()) {
		t.Fatalf("report after a silence: %+v", got)
	}
	if d, c := events(t, r.a, r.admin, jit.OpAgentDisconnect), events(t, r.a, r.admin, jit.OpAgentConnect); len(d) != len(r.agents) || len(c) != len(r.agents)+1 {
		t.Fatalf("%d disconnect and %d connect events, want %d and %d", len(d), len(c), len(r.agents), len(r.agents)+1)
	}
}

// TestWatchIsPresence: an agent whose long poll is pending on replica A
// sends nothing else for ten minutes, yet replica B never marks it
// offline; its report (with a new applied revision) is written by A's
// next flush, not by a write of its own. When its poll ends without a new
// one (the connection died), it is marked offline once AgentOfflineAfter
// has passed.
func TestWatchIsPresence(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t, "web-1", "web-2")
	type answer struct {
		changed bool
		err     error
	}
	watch := func(ctx context.Context, ag *control.Actor, after, applied int64, wait time.Duration) answer {
		_, changed, err := r.a.AgentWatch(ctx, ag, jit.Watch{After: after, Report: jit.Report{Enforceable: true, Hostname: "h", AppliedRevision: applied}}, wait)
		return answer{changed, err}
	}
	// The first poll answers at once; its report (first contact) is
	// written at once.
	revs := make([]int64, len(r.agents))
	for i, ag := range r.agents {
		st, changed, err := r.a.AgentWatch(ctx, ag, jit.Watch{After: -1, Report: jit.Report{Enforceable: true, Hostname: "h"}}, time.Hour)
		if err != nil || !changed {
			t.Fatalf("first poll: %v, changed %v", err, changed)
		}
		revs[i] = st.Revision
	}
	before := r.st.updates.Load()
	polls := make([]context.CancelFunc, len(r.agents))
	answers := make([]chan answer, len(r.agents))
	for i, ag := range r.agents {
		pctx, cancel := context.WithCancel(ctx)
		polls[i], answers[i] = cancel, make(chan answer, 1)
		go func() { answers[i] <- watch(pctx, ag, revs[i], revs[i], time.Hour) }()
	}
	defer func() {
		for i, cancel := range polls {
			cancel()
			if i > 0 {
				<-answers[i]
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // the polls are waiting
	if got := r.st.updates.Load() - before; got != 0 {
		t.Fatalf("polls carrying a new applied revision took %d writes before the flush", got)
	}
	if flushed, _ := r.tick(t); flushed != len(r.agents) {
		t.Fatalf("flush wrote %d reports, want %d", flushed, len(r.agents))
	}
	if got := r.stored(t, r.vms[1]); got.AppliedRevision != revs[1] {
		t.Fatalf("stored applied revision %d, want %d", got.AppliedRevision, revs[1])
	}
	for range 20 { // ten minutes
		r.clk.add(30 * time.Second)
		if _, marked := r.tick(t); marked != 0 {
			t.Fatalf("%d agents with a pending poll marked offline", marked)
		}
	}

	// Agent 0's connection dies: its poll ends, and no other comes.
	polls[0]()
	if a := <-answers[0]; a.err != nil || a.changed {
		t.Fatalf("poll ended by its caller: changed %v, %v", a.changed, a.err)
	}
	gone := r.clk.now()
	for {
		r.clk.add(30 * time.Second)
		if _, marked := r.tick(t); marked > 0 {
			break
		}
		if r.clk.now().Sub(gone) > jit.AgentOfflineAfter+30*time.Second {
			t.Fatalf("agent whose poll ended not marked offline %v later", r.clk.now().Sub(gone))
		}
	}
	if got := r.stored(t, r.vms[0]); !got.Disconnected {
		t.Fatalf("agent whose poll ended: %+v", got)
	}
	if got := r.stored(t, r.vms[1]); got.Disconnected {
		t.Fatalf("agent still polling marked disconnected: %+v", got)
	}
}
