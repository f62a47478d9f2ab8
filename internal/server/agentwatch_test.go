package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// agentBench is an API over TLS with HTTP/2 on, as ajard serves it, with
// a clock the test can move forward.
type agentBench struct {
	ctl     *control.Control
	api     *server.Server
	url     string
	fp      string
	admin   *client.Client
	adminA  *control.Actor
	enroll  string // an enrollment token's secret
	offset  atomic.Int64
	closeFn func()
}

func newAgentBench(t *testing.T) *agentBench {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	b := &agentBench{}
	b.ctl = control.New(db, log, func() time.Time { return time.Now().Add(time.Duration(b.offset.Load())) })
	const token = "ajar_test-admin-token-0123456789"
	if _, err := b.ctl.Bootstrap(ctx, token); err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { b.ctl.RunWatchHub(hubCtx) })
	b.api = server.New(b.ctl, log, nil)
	srv := httptest.NewUnstartedServer(b.api)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); stopHub(); wg.Wait(); db.Close() })
	b.url, b.fp = srv.URL, client.CertFingerprint(srv.Certificate())
	b.admin = b.client(t, token, false)
	if b.adminA, err = b.ctl.Authenticate(ctx, token, netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.CreateGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	tk, err := b.admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "g", Uses: 10})
	if err != nil {
		t.Fatal(err)
	}
	b.enroll = tk.Secret
	return b
}

func (b *agentBench) client(t *testing.T, token string, http1 bool) *client.Client {
	t.Helper()
	c, err := client.New(b.url, token, client.Options{Fingerprint: b.fp, HTTP1: http1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// agent enrolls a VM and returns its agent's client: this version's
// (HTTP/1.1) or the previous version's (HTTP/2, as Go negotiates it).
func (b *agentBench) agent(t *testing.T, name string, http1 bool) (*client.Client, string) {
	t.Helper()
	e, err := b.client(t, b.enroll, false).Enroll(t.Context(), jit.Enrollment{Name: name, OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	return b.client(t, e.Secret, http1), e.VM.ID
}

func (b *agentBench) report(t *testing.T, vmID string) *jit.Report {
	t.Helper()
	v, err := b.admin.GetVM(t.Context(), vmID)
	if err != nil {
		t.Fatal(err)
	}
	return v.Report
}

// inFlight returns the requests the server is serving, this one aside.
func (b *agentBench) inFlight(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	if err := b.admin.Do(t.Context(), http.MethodGet, "/metrics", nil, &buf); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(line, "ajar_http_requests_in_flight "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no ajar_http_requests_in_flight in /metrics")
	return ""
}

func policy22() jit.Policy {
	return jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}}}
}

// TestAgentWatchAndPreviousAgents: during an upgrade, an agent of this
// version (one HTTP/1.1 long poll carrying its report) and one of the
// previous version (HTTP/2 long poll and a separate heartbeat) both get
// their VM's change at once and both have their applied revision stored
// by the next flush; a watch with no change answers 204 after its wait.
func TestAgentWatchAndPreviousAgents(t *testing.T) {
	ctx := t.Context()
	b := newAgentBench(t)
	b.api.AgentWatch, b.api.LongPoll = 200*time.Millisecond, 200*time.Millisecond
	fresh, freshVM := b.agent(t, "new-1", true)
	old, oldVM := b.agent(t, "old-1", false)
	rep := jit.Report{Enforceable: true, Hostname: "h", OS: "linux", Listening: []jit.Socket{{Protocol: "TCP", Port: 22}}}

	st, changed, err := fresh.Watch(ctx, -1, rep)
	if err != nil || !changed {
		t.Fatalf("first watch: changed %v, %v", changed, err)
	}
	if r := b.report(t, freshVM); r == nil || r.Hostname != "h" {
		t.Fatalf("first watch's report not stored at once: %+v", r)
	}
	start := time.Now()
	if _, changed, err := fresh.Watch(ctx, st.Revision, rep); err != nil || changed {
		t.Fatalf("watch without a change: changed %v, %v", changed, err)
	}
	if d := time.Since(start); d < b.api.AgentWatch || d > 10*b.api.AgentWatch {
		t.Errorf("watch without a change answered after %v; want between %v and about 1.5 times it", d, b.api.AgentWatch)
	}
	oldSt, err := old.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Report(ctx, rep); err != nil {
		t.Fatal(err)
	}

	// Both wait for a change (longer than the test, so an answer is the
	// change); each VM gets a policy.
	b.api.AgentWatch, b.api.LongPoll = time.Minute, time.Minute
	type answer struct {
		rev int64
		err error
	}
	freshAns, oldAns := make(chan answer, 1), make(chan answer, 1)
	go func() {
		st, changed, err := fresh.Watch(ctx, st.Revision, rep)
		if err == nil && !changed {
			st.Revision = -1
		}
		freshAns <- answer{st.Revision, err}
	}()
	go func() {
		st, err := old.WatchDesiredState(ctx, oldSt.Revision)
		oldAns <- answer{st.Revision, err}
	}()
	time.Sleep(100 * time.Millisecond)
	for _, id := range []string{freshVM, oldVM} {
		if _, err := b.admin.PutPolicy(ctx, id, policy22()); err != nil {
			t.Fatal(err)
		}
	}
	var revs [2]int64
	for i, ch := range []chan answer{freshAns, oldAns} {
		select {
		case a := <-ch:
			if a.err != nil || a.rev <= oldSt.Revision && i == 1 || a.rev <= st.Revision && i == 0 {
				t.Fatalf("agent %d: change answered revision %d, %v", i, a.rev, a.err)
			}
			revs[i] = a.rev
		case <-time.After(5 * time.Second):
			t.Fatalf("agent %d did not get its change within 5 s", i)
		}
	}

	// Each reports its new revision its own way; the flush stores both.
	b.api.AgentWatch = 200 * time.Millisecond
	applied := rep
	applied.AppliedRevision = revs[0]
	if _, _, err := fresh.Watch(ctx, revs[0], applied); err != nil {
		t.Fatal(err)
	}
	applied.AppliedRevision = revs[1]
	if err := old.Report(ctx, applied); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ctl.FlushReports(ctx); err != nil || n != 2 {
		t.Fatalf("flush: %d written, %v; want 2", n, err)
	}
	for i, id := range []string{freshVM, oldVM} {
		if r := b.report(t, id); r.AppliedRevision != revs[i] {
			t.Errorf("agent %d: stored applied revision %d, want %d", i, r.AppliedRevision, revs[i])
		}
	}

	// A report the server refuses names its field and changes nothing.
	bad := rep
	bad.Reason = strings.Repeat("x", control.MaxReportReason+1)
	if _, _, err := fresh.Watch(ctx, revs[0], bad); jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != "reason" {
		t.Errorf("watch with too long a reason: %v, want invalid reason", err)
	}
	if _, _, err := fresh.Watch(ctx, -2, rep); jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != "after" {
		t.Errorf("watch after -2: %v, want invalid after", err)
	}
	if _, _, err := b.admin.Watch(ctx, -1, rep); jit.ErrorCode(err) != jit.EForbidden {
		t.Errorf("watch with a user's token: %v, want forbidden", err)
	}
}

// TestAgentWatchDeadConnection: an agent whose long poll is pending counts
// as seen (a flush keeps its stored time fresh, so it is never marked
// offline); when its connection closes, the poll ends, and once
// AgentOfflineAfter passes without another the agent is marked offline.
func TestAgentWatchDeadConnection(t *testing.T) {
	ctx := t.Context()
	b := newAgentBench(t)
	b.api.AgentWatch = time.Hour
	ag, vm := b.agent(t, "web-1", true)
	rep := jit.Report{Enforceable: true, Hostname: "h"}
	st, _, err := ag.Watch(ctx, -1, rep)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, err := ag.Watch(pctx, st.Revision, rep)
		done <- err
	}()
	ended := false
	defer func() {
		if cancel(); !ended {
			<-done
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); b.inFlight(t) != "2"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch is not pending")
		}
	}
	for range 6 { // six minutes
		b.offset.Add(int64(time.Minute))
		if _, err := b.ctl.FlushReports(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := b.ctl.MarkSilentAgents(ctx); err != nil || n != 0 {
			t.Fatalf("agent with a pending poll: %d marked offline, %v", n, err)
		}
	}

	cancel() // closes the HTTP/1.1 connection under way
	ended = true
	<-done // an error, or the "no change" the server answered as the connection closed
	for deadline := time.Now().Add(5 * time.Second); b.inFlight(t) != "1"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server still serves the watch whose connection closed")
		}
	}
	b.offset.Add(int64(jit.AgentOfflineAfter + time.Second))
	if _, err := b.ctl.FlushReports(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ctl.MarkSilentAgents(ctx); err != nil || n != 1 {
		t.Fatalf("agent whose connection closed: %d marked offline, %v; want 1", n, err)
	}
	if r := b.report(t, vm); !r.Disconnected {
		t.Fatalf("report of the agent gone: %+v", r)
	}
}
