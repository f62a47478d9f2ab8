package replicatest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// watched is one desired state an agent's long poll returned, and when.
type watched struct {
	at time.Time
	st jit.DesiredState
	// err ends the watch.
	err error
}

// TestPushAcrossReplicas requests access through replica B and measures
// how long the grant takes to reach an agent whose long poll waits on
// replica A.
func TestPushAcrossReplicas(t *testing.T) {
	a, b := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if _, err := a.Admin.CreateGroup(ctx, "push"); err != nil {
		t.Fatal(err)
	}
	et, err := a.Admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "push"})
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := a.Client(et.Secret).Enroll(ctx, jit.Enrollment{Name: "push-vm", Hostname: "push-vm", OS: "linux", Addresses: []string{"192.0.2.10"}})
	if err != nil {
		t.Fatal(err)
	}
	vmID := enrolled.VM.ID
	agent := a.Client(enrolled.Secret)
	st, err := agent.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}

	// The agent watches through A, as an agent does: each long poll
	// continues from the revision the previous one returned.
	states := make(chan watched, 16)
	wctx, stopWatch := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(states)
		rev := st.Revision
		for {
			st, err := agent.WatchDesiredState(wctx, rev)
			w := watched{at: time.Now(), st: st, err: err}
			if wctx.Err() != nil {
				return
			}
			select {
			case states <- w:
			case <-wctx.Done():
				return
			}
			if err != nil {
				return
			}
			rev = st.Revision
		}
	}()
	defer func() { stopWatch(); <-done }()

	// await returns when the watch delivers a state that satisfies ok.
	await := func(what string, ok func(jit.DesiredState) bool) time.Time {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case w, open := <-states:
				if !open {
					t.Fatalf("%s: the watch ended", what)
				}
				if w.err != nil {
					t.Fatalf("%s: watch: %v", what, w.err)
				}
				if ok(w.st) {
					return w.at
				}
			case <-timeout:
				t.Fatalf("%s: not in the agent's desired state within 5s", what)
			}
		}
	}

	admin := b.Admin
	if _, err := admin.PutPolicy(ctx, vmID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	await("the policy", func(st jit.DesiredState) bool { return len(st.Lock) == 1 })

	const rounds = 50
	var delays []time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for i := range rounds {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d rounds within 30s", i, rounds)
		}
		// Let the agent's next long poll reach A before the change.
		time.Sleep(20 * time.Millisecond)
		req, err := admin.RequestAccess(ctx, jit.AccessRequest{Justification: "push", VirtualMachines: []jit.VMRequest{{ID: vmID,
			Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: source(i), Duration: "PT1H"}}}}})
		acked := time.Now()
		if err != nil {
			t.Fatalf("round %d: request through B: %v", i, err)
		}
		if len(req.Grants) != 1 {
			t.Fatalf("round %d: %d grants, want 1", i, len(req.Grants))
		}
		id := req.Grants[0].ID
		seen := await("grant "+id, func(st jit.DesiredState) bool {
			return slices.ContainsFunc(st.Grants, func(g jit.GrantRule) bool { return g.ID == id })
		})
		// A may answer the agent before B's 201 reaches us: count that as 0.
		delays = append(delays, max(0, seen.Sub(acked)))
	}

	sorted := slices.Clone(delays)
	slices.Sort(sorted)
	p50, p99, worst := sorted[len(sorted)/2], sorted[min(len(sorted)-1, len(sorted)*99/100)], sorted[len(sorted)-1]
	t.Logf("request through B to the agent's watch on A, %d rounds: p50 %v, p99 %v, max %v", len(sorted), p50, p99, worst)
	for i, d := range delays {
		if d >= time.Second {
			t.Errorf("round %d: delay %v, want < 1s", i, d)
		}
	}
	if p50 >= 100*time.Millisecond {
		t.Errorf("p50 delay %v, want < 100ms (the issue's target)", p50)
	}
}
