package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/netns"
	"github.com/ajarhq/ajar/internal/nft"
)

// guardedAgent returns an agent whose firewall is real nftables in a fresh
// namespace, with no server: what guardOnce does is seen in its events.
func guardedAgent(t *testing.T) (*Agent, *netns.NS) {
	t.Helper()
	netns.Require(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft(8) not installed (apt-get install nftables)")
	}
	ns := netns.New(t, "guard")
	fw, err := nft.New(nft.Options{NetNS: int(ns.Open(t).Fd())})
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{
		Dir: t.TempDir(), Firewall: fw, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		events: make(chan jit.AgentEvent, 256), killed: map[string]bool{},
	}, ns
}

// driftEvents drains the agent's queued events and returns the reasons of
// the drift detections among them.
func driftEvents(a *Agent) []string {
	var reasons []string
	for {
		select {
		case e := <-a.events:
			if e.Operation == jit.OpDriftDetect {
				reasons = append(reasons, string(e.Details))
			}
		default:
			return reasons
		}
	}
}

// TestExpiriesAreNoDrift: twenty grants on neighbouring addresses end one
// after another over two seconds while the guard checks ten times a second;
// none of their endings is drift, and an element injected afterwards is.
func TestExpiriesAreNoDrift(t *testing.T) {
	a, ns := guardedAgent(t)
	ctx := context.Background()
	now := time.Now()
	st := jit.DesiredState{Revision: 1, ServerTime: now, Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}}
	const n = 20
	for i := range n {
		life := time.Second + time.Duration(i)*100*time.Millisecond // 1.0 s to 2.9 s
		st.Grants = append(st.Grants, jit.GrantRule{ID: fmt.Sprint("g", i), Port: 22, Protocol: jit.ProtoTCP,
			Source: fmt.Sprintf("198.51.100.%d/32", 100+i), EndTime: now.Add(life), RemainingSeconds: int64(life.Round(time.Second) / time.Second)})
	}
	if err := a.apply(ctx, hold(st, now), "test"); err != nil {
		t.Fatal(err)
	}
	last := now.Add(time.Second + (n-1)*100*time.Millisecond)
	checks := 0
	for time.Now().Before(last.Add(2 * time.Second)) {
		a.guardOnce(ctx)
		checks++
		time.Sleep(100 * time.Millisecond)
	}
	if reasons := driftEvents(a); len(reasons) > 0 {
		t.Fatalf("%d drift events over %d expiries (%d checks): %v", len(reasons), n, checks, reasons)
	}
	if out := ns.Run(t, "nft", "list", "set", "inet", "ajar", "grant4_tcp"); regexpElements.MatchString(out) {
		t.Fatalf("grant elements left after every grant ended:\n%s", out)
	}

	ns.Run(t, "nft", "add", "element", "inet", "ajar", "grant4_tcp", "{ 198.51.100.99 . 22 timeout 1h }")
	a.guardOnce(ctx)
	if reasons := driftEvents(a); len(reasons) != 1 {
		t.Fatalf("injected element: drift events %v, want one", reasons)
	}
	if out := ns.Run(t, "nft", "list", "set", "inet", "ajar", "grant4_tcp"); regexpElements.MatchString(out) {
		t.Fatalf("injected element not removed by the repair:\n%s", out)
	}
}

var regexpElements = regexp.MustCompile(`elements = `)

func TestBackoff(t *testing.T) {
	outage := []error{errors.New("dial tcp 198.51.100.1:8443: connect: connection refused"),
		&jit.Error{Code: jit.EUnavailable, Message: "store unavailable"}, &jit.Error{Code: jit.EInternal, Message: "server answered 502 Bad Gateway"}}
	refusal := []error{&jit.Error{Code: jit.EUnauthorized, Message: "token revoked"}, &jit.Error{Code: jit.ERateLimited, Message: "slow down"}}
	for _, tc := range []struct {
		name                string
		errs                []error
		limit, settledAbove time.Duration
	}{
		{"server unreachable or unavailable", outage, time.Second, 500 * time.Millisecond},
		{"server refuses", refusal, 30 * time.Second, 15 * time.Second},
	} {
		firsts := map[time.Duration]bool{}
		for range 50 {
			var b backoff
			var waits []time.Duration
			for i := range 20 {
				waits = append(waits, b.next(tc.errs[i%len(tc.errs)]))
			}
			if waits[0] < retryFirst/2 || waits[0] > retryFirst {
				t.Fatalf("%s: first wait %v, want %v to %v", tc.name, waits[0], retryFirst/2, retryFirst)
			}
			firsts[waits[0]] = true
			for i, w := range waits {
				if w > tc.limit {
					t.Fatalf("%s: wait %d is %v, above the cap %v (%v)", tc.name, i, w, tc.limit, waits)
				}
			}
			if last := waits[len(waits)-1]; last < tc.settledAbove {
				t.Fatalf("%s: wait after 20 failures %v, want at least %v (%v)", tc.name, last, tc.settledAbove, waits)
			}
			b = backoff{}
			if w := b.next(tc.errs[0]); w > retryFirst {
				t.Fatalf("%s: wait after a reset %v, want at most %v", tc.name, w, retryFirst)
			}
		}
		if len(firsts) < 10 {
			t.Errorf("%s: 50 agents drew only %d different first waits: no jitter", tc.name, len(firsts))
		}
	}
	// An outage after refusals comes back to the short cap at once.
	var b backoff
	for range 10 {
		b.next(refusal[0])
	}
	if w := b.next(outage[0]); w > retryCapOutage {
		t.Fatalf("outage after refusals: wait %v, want at most %v", w, retryCapOutage)
	}
}

// TestApplyReportsDriftItOverwrites: a table deleted by hand just before a
// new state arrives is drift in the events, although the new state's apply
// (and not the guard) puts the table back; an apply over an untouched table
// is none.
func TestApplyReportsDriftItOverwrites(t *testing.T) {
	a, ns := guardedAgent(t)
	ctx := context.Background()
	now := time.Now()
	st := jit.DesiredState{Revision: 1, ServerTime: now, Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}}
	if err := a.apply(ctx, hold(st, now), "server"); err != nil {
		t.Fatal(err)
	}
	st.Revision = 2
	if err := a.apply(ctx, hold(st, time.Now()), "server"); err != nil {
		t.Fatal(err)
	}
	if reasons := driftEvents(a); len(reasons) > 0 {
		t.Fatalf("apply over an untouched table: drift events %v", reasons)
	}
	ns.Run(t, "nft", "delete", "table", "inet", "ajar")
	st.Revision = 3
	if err := a.apply(ctx, hold(st, time.Now()), "server"); err != nil {
		t.Fatal(err)
	}
	if reasons := driftEvents(a); len(reasons) != 1 {
		t.Fatalf("apply over a table deleted by hand: drift events %v, want one", reasons)
	}
	ns.Run(t, "nft", "list", "table", "inet", "ajar")
}

// TestAgentKeepsGrantsWithAnOlderServer: an agent upgraded before its
// ajard meets a server without its long poll's route (404 "no such API
// route"): it keeps the grants it applied and waits for the upgrade; a
// server that no longer knows its VM (404 of the VM) closes them.
func TestAgentKeepsGrantsWithAnOlderServer(t *testing.T) {
	for _, tc := range []struct {
		message string
		closes  bool
	}{
		{"no such API route: POST /api/v1/agent/watch", false},
		{"VM 0123 not found", true},
	} {
		a, _ := guardedAgent(t)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"not_found","message":%q}}`, tc.message)
		}))
		api, err := client.New(srv.URL, "ajar_agent-token-0123456789", client.Options{HTTP1: true})
		if err != nil {
			t.Fatal(err)
		}
		a.API, a.wake = api, make(chan struct{}, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		now := time.Now()
		st := jit.DesiredState{Revision: 1, ServerTime: now, Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}},
			Grants: []jit.GrantRule{{ID: "g1", Port: 22, Protocol: jit.ProtoTCP, Source: "192.0.2.7", EndTime: now.Add(time.Hour), RemainingSeconds: 3600}}}
		if err := a.apply(ctx, hold(st, now), "server"); err != nil {
			t.Fatal(err)
		}
		a.watch(ctx)
		cancel()
		srv.Close()
		a.mu.Lock()
		open := len(a.cur.State.Grants)
		a.mu.Unlock()
		if closed := open == 0; closed != tc.closes {
			t.Errorf("404 %q: %d grants open after, want closed %v", tc.message, open, tc.closes)
		}
	}
}
