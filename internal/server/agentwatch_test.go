package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/selfsigned"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// agentBench is an API over TLS with HTTP/2 on, as ajard serves it, with
// a clock the test can move forward: served by server.Run, which parks
// agents' waiting polls (parked), or by httptest, which cannot.
type agentBench struct {
	ctl     *control.Control
	api     *server.Server
	url     string
	fp      string
	admin   *client.Client
	adminA  *control.Actor
	enroll  string // an enrollment token's secret
	offset  atomic.Int64
	parked  bool
	accepts atomic.Int64 // TCP connections accepted (parked only)
	stop    func()       // stops server.Run (parked only)
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newAgentBench(t *testing.T, parked bool) *agentBench {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	b := &agentBench{parked: parked}
	b.ctl = control.New(db, log, func() time.Time { return time.Now().Add(time.Duration(b.offset.Load())) })
	const token = "ajar_test-admin-token-0123456789"
	if _, err := b.ctl.Bootstrap(ctx, token); err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.ctl.RunWatchHub(hubCtx) })
	b.api = server.New(b.ctl, log, nil)
	if parked {
		cert, err := selfsigned.Load(t.TempDir(), []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: b.api, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		srv.RegisterOnShutdown(b.ctl.Drain)
		runCtx, stop := context.WithCancel(context.Background())
		var run sync.WaitGroup
		run.Go(func() {
			if err := server.Run(runCtx, srv, countingListener{ln, &b.accepts}, "", "", 5*time.Second); err != nil {
				t.Errorf("server.Run: %v", err)
			}
		})
		b.stop = func() { stop(); run.Wait() }
		t.Cleanup(func() { b.stop(); stopHub(); wg.Wait(); db.Close() })
		b.url, b.fp = "https://"+ln.Addr().String(), selfsigned.Fingerprint(cert.Certificate[0])
	} else {
		srv := httptest.NewUnstartedServer(b.api)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(func() { srv.Close(); stopHub(); wg.Wait(); db.Close() })
		b.url, b.fp = srv.URL, client.CertFingerprint(srv.Certificate())
	}
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

// waiting reports how many agents' watches wait, parked or not.
func (b *agentBench) waiting(t *testing.T) int {
	t.Helper()
	if b.parked {
		n, _ := strconv.Atoi(b.metric(t, "ajar_agent_watches_parked"))
		return n
	}
	n, _ := strconv.Atoi(b.metric(t, "ajar_http_requests_in_flight"))
	return n - 1 // this one
}

// eventuallyWaiting waits until n watches wait.
func (b *agentBench) eventuallyWaiting(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.waiting(t) != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches wait, want %d", b.waiting(t), n)
		}
	}
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

// metric returns a metric's value from /metrics.
func (b *agentBench) metric(t *testing.T, name string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := b.admin.Do(t.Context(), http.MethodGet, "/metrics", nil, &buf); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /metrics", name)
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
	for _, parked := range []bool{false, true} {
		t.Run(fmt.Sprintf("parked=%v", parked), func(t *testing.T) { testAgentWatchAndPreviousAgents(t, parked) })
	}
}

func testAgentWatchAndPreviousAgents(t *testing.T, parked bool) {
	ctx := t.Context()
	b := newAgentBench(t, parked)
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
	for _, parked := range []bool{false, true} {
		t.Run(fmt.Sprintf("parked=%v", parked), func(t *testing.T) { testAgentWatchDeadConnection(t, parked) })
	}
}

func testAgentWatchDeadConnection(t *testing.T, parked bool) {
	ctx := t.Context()
	b := newAgentBench(t, parked)
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
	b.eventuallyWaiting(t, 1)
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
	<-done                    // an error, or the "no change" the server answered as the connection closed
	b.eventuallyWaiting(t, 0) // the server noticed the connection close
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

// TestParkedWatchesShareOneConnection: an agent's watches that wait park
// its connection outside the HTTP server, and it goes back to the server
// after each answer: a change, a "no change" and its events all use one
// TCP connection; a server that stops answers a parked watch at once.
func TestParkedWatchesShareOneConnection(t *testing.T) {
	ctx := t.Context()
	b := newAgentBench(t, true)
	b.api.AgentWatch = 300 * time.Millisecond
	ag, vm := b.agent(t, "web-1", true)
	rep := jit.Report{Enforceable: true, Hostname: "h"}
	st, _, err := ag.Watch(ctx, -1, rep)
	if err != nil {
		t.Fatal(err)
	}
	before := b.accepts.Load()
	for i := range 3 {
		done := make(chan error, 1)
		var got jit.DesiredState
		var changed bool
		go func() {
			var err error
			got, changed, err = ag.Watch(ctx, st.Revision, rep)
			done <- err
		}()
		if i == 1 { // no change: 204 after the wait
			if err := <-done; err != nil || changed {
				t.Fatalf("watch without a change: changed %v, %v", changed, err)
			}
			continue
		}
		b.eventuallyWaiting(t, 1)
		if _, err := b.admin.PutPolicy(ctx, vm, policy22()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil || !changed || got.Revision <= st.Revision || len(got.Lock) != 1 {
				t.Fatalf("parked watch after a change: revision %d (was %d), changed %v, %v", got.Revision, st.Revision, changed, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("parked watch not answered within 5 s of its VM's change")
		}
		st = got
		if err := ag.AgentEvent(ctx, jit.AgentEvent{Operation: jit.OpEnforceApply, Details: []byte(`{"revision":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.accepts.Load() - before; n != 0 {
		t.Errorf("three watches and two events took %d new connections, want none (the first one's)", n)
	}

	// The server stops: the parked watch is answered at once.
	b.api.AgentWatch = time.Hour
	done := make(chan error, 1)
	go func() {
		_, _, err := ag.Watch(ctx, st.Revision, rep)
		done <- err
	}()
	b.eventuallyWaiting(t, 1)
	start := time.Now()
	b.stop()
	select {
	case <-done:
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("stopping took %v with a parked watch", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stopping server left a parked watch waiting")
	}
}
