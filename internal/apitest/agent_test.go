package apitest

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestAgent checks the agents' endpoints: one-use enrollment, the agent
// credential's reach (its own VM only) and the desired-state long poll.
func TestAgent(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := t.Context()
	group(t, s, "A", "B")
	alice := user(t, s, "alice", jit.RoleRequester, "A")
	other := vm(t, s.Admin, "A", "other")
	policy(t, s.Admin, other.ID, false, rule(22, "TCP", "PT1H"))
	request(t, s.Admin, other.ID, port(22, "PT10M"))

	// An enrollment token for one use.
	st, body := call(t, s, ajardtest.AdminToken, "POST", "/api/v1/enrollment-tokens", map[string]any{"group": "A", "ttl": "PT10M", "uses": 1})
	if st != http.StatusCreated {
		t.Fatalf("create enrollment token = %d %s", st, body)
	}
	var et jit.CreatedToken
	if err := json.Unmarshal(body, &et); err != nil {
		t.Fatal(err)
	}
	if et.Kind != jit.TokenEnroll || et.Group != "A" || et.UsesLeft == nil || *et.UsesLeft != 1 || et.ExpiresAt == nil || !strings.HasPrefix(et.Secret, "ajar_") {
		t.Errorf("enrollment token %+v", et)
	}

	st, body = call(t, s, et.Secret, "POST", "/api/v1/agent/enroll", jit.Enrollment{Name: "host-1", Hostname: "host-1.example", OS: "linux", Addresses: []string{"10.0.0.5"}})
	if st != http.StatusCreated {
		t.Fatalf("first enrollment = %d %s", st, body)
	}
	var en jit.Enrolled
	if err := json.Unmarshal(body, &en); err != nil {
		t.Fatal(err)
	}
	if en.VM.Group != "A" || en.VM.Name != "host-1" || en.VM.Backend != jit.BackendAgent || !strings.HasPrefix(en.Secret, "ajar_") {
		t.Errorf("enrolled %+v", en)
	}
	if es := events(t, s, client.EventQuery{VM: en.VM.ID, Operation: jit.OpAgentEnroll}); len(es) != 1 {
		t.Errorf("%d agent.enroll events, want 1", len(es))
	}

	t.Run("second enrollment refused", func(t *testing.T) {
		before := snap(t, s)
		st, body := call(t, s, et.Secret, "POST", "/api/v1/agent/enroll", jit.Enrollment{Name: "host-2", Hostname: "host-2.example", OS: "linux"})
		wantError(t, st, body, http.StatusUnauthorized, jit.EUnauthorized, "-", "no uses left")
		before.unchanged(t, s, 0, "")
	})

	agentTok := en.Secret
	agent := s.Client(agentTok)
	ds, err := agent.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if ds.VMID != en.VM.ID || len(ds.Lock) != 0 || len(ds.Grants) != 0 {
		t.Errorf("first desired state %+v, want the enrolled VM's, empty", ds)
	}

	t.Run("own VM only", func(t *testing.T) {
		st, body := call(t, s, agentTok, "GET", "/api/v1/vms", nil)
		switch {
		case st == http.StatusForbidden:
		case st == http.StatusOK && len(groupsOf(t, body)) == 0:
			t.Logf("GET /api/v1/vms as an agent: 200 with no VMs (not 403)")
		default:
			t.Errorf("GET /api/v1/vms as an agent = %d %s, want 403 or no VMs", st, body)
		}
		if st, body := call(t, s, agentTok, "GET", "/api/v1/grants", nil); st == http.StatusOK && len(groupsOf(t, body)) != 0 {
			t.Errorf("an agent sees grants: %s", body)
		}
		// Its own VM's desired state only (through /agent/desired-state):
		// not its policy, its users' grants or its usage.
		for _, p := range []string{"/api/v1/vms/" + other.ID, "/api/v1/vms/" + other.ID + "/desired-state", "/api/v1/vms/" + other.ID + "/policy",
			"/api/v1/vms/" + en.VM.ID, "/api/v1/vms/" + en.VM.ID + "/policy", "/api/v1/vms/" + en.VM.ID + "/recommendation"} {
			st, body := call(t, s, agentTok, "GET", p, nil)
			wantError(t, st, body, http.StatusNotFound, jit.ENotFound, "-")
		}
		for _, r := range []struct {
			method, path string
			body         any
			status       int
		}{
			{"GET", "/api/v1/activity", nil, 403},
			{"GET", "/api/v1/users", nil, 403},
			{"POST", "/api/v1/requests", accessBody(en.VM.ID), 403},
			{"PUT", "/api/v1/vms/" + en.VM.ID + "/policy", policyBody, 404}, // its own VM is invisible to it too
			{"POST", "/api/v1/vms", map[string]any{"name": "sneaky", "group": "A"}, 403},
			{"POST", "/api/v1/agent/enroll", jit.Enrollment{Name: "host-3"}, 403},
		} {
			before := snap(t, s)
			st, body := call(t, s, agentTok, r.method, r.path, r.body)
			if st != r.status {
				t.Errorf("agent %s %s = %d %s, want %d", r.method, r.path, st, body, r.status)
			}
			n := 0
			if r.path == "/api/v1/requests" {
				n = 1 // a refused request is logged
			}
			before.unchanged(t, s, n, jit.OpRequestRefuse)
		}
		// A person's token is not an agent's.
		st, body = call(t, s, alice, "GET", "/api/v1/agent/desired-state", nil)
		wantError(t, st, body, http.StatusForbidden, jit.EForbidden, "-", "agent")
	})

	t.Run("long poll", func(t *testing.T) {
		type answer struct {
			st  jit.DesiredState
			err error
			at  time.Time
		}
		watch := func(after int64) <-chan answer {
			ch := make(chan answer, 1)
			go func() {
				st, err := agent.WatchDesiredState(ctx, after)
				ch <- answer{st, err, time.Now()}
			}()
			return ch
		}
		rev := must[jit.DesiredState](t)(agent.WatchDesiredState(ctx, -1)).Revision

		// Behind: answers at once.
		t0 := time.Now()
		if a := <-watch(rev - 1); a.err != nil || a.st.Revision != rev || time.Since(t0) > time.Second {
			t.Errorf("watch after an older revision: %+v after %v", a, time.Since(t0))
		}

		var lat []time.Duration
		for i := range 5 {
			ch := watch(rev)
			wait := 200 * time.Millisecond
			if i == 0 {
				wait = time.Second
			}
			select {
			case a := <-ch:
				t.Fatalf("watch returned without a change: %+v", a)
			case <-time.After(wait):
			}
			p := 2000 + i
			put := time.Now()
			policy(t, s.Admin, en.VM.ID, false, rule(p, "TCP", "PT1H"))
			put2 := time.Now()
			var a answer
			select {
			case a = <-ch:
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not return within 5s of a policy change")
			}
			if a.err != nil {
				t.Fatal(a.err)
			}
			if a.st.Revision <= rev || !slices.Equal(a.st.Lock, []jit.PortLock{{Port: p, Protocol: jit.ProtoTCP}}) {
				t.Errorf("after PUT policy: %+v, want revision > %d locking %d/TCP", a.st, rev, p)
			}
			rev = a.st.Revision
			l := a.at.Sub(put)
			lat = append(lat, l)
			t.Logf("long poll answered %v after the PUT was sent (%v after its response)", l, a.at.Sub(put2))
		}
		slices.Sort(lat)
		t.Logf("long-poll latency after a policy PUT (from sending the PUT), 5 runs: min %v median %v max %v", lat[0], lat[2], lat[4])
		if lat[2] > 100*time.Millisecond || lat[4] > 500*time.Millisecond {
			t.Errorf("long poll too slow: median %v, max %v; want about 100 ms", lat[2], lat[4])
		}

		// A grant opened for a person wakes the agent too, and arrives with
		// its remaining time.
		ch := watch(rev)
		policy(t, s.Admin, en.VM.ID, false, rule(22, "TCP", "PT1H"))
		a := <-ch
		rev = a.st.Revision
		ch = watch(rev)
		g := request(t, s.Client(alice), en.VM.ID, port(22, "PT10M")).Grants[0]
		select {
		case a = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not return within 5s of a grant")
		}
		if len(a.st.Grants) != 1 || a.st.Grants[0].ID != g.ID || a.st.Grants[0].Source != "127.0.0.1/32" ||
			a.st.Grants[0].RemainingSeconds < 590 || a.st.Grants[0].RemainingSeconds > 600 {
			t.Errorf("desired state after a grant: %+v", a.st)
		}

		// The grant's expiry (the server's timer, no one calling) wakes
		// the agent with the grant gone.
		short := request(t, s.Client(alice), en.VM.ID, port(22, "PT1S")).Grants[0]
		rev = must[jit.DesiredState](t)(agent.WatchDesiredState(ctx, -1)).Revision
		ch = watch(rev)
		select {
		case a = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not return within 5s of a grant's end")
		}
		if len(a.st.Grants) != 0 || a.at.Before(short.EndTime) {
			t.Errorf("desired state at %v after the grant ending at %v: %+v", a.at, short.EndTime, a.st)
		}
		t.Logf("expiry reached the long poll %v after the grant's end time", a.at.Sub(short.EndTime))

		// With nothing changing, the watch waits (here until the client
		// gives up).
		wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		t0 = time.Now()
		_, err := agent.WatchDesiredState(wctx, a.st.Revision)
		if err == nil || time.Since(t0) < 1400*time.Millisecond {
			t.Errorf("idle watch returned after %v with %v, want it to wait", time.Since(t0), err)
		}
	})
	wantVerified(t, s)
}
