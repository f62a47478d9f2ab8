package storetest

import (
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// testPolicyApproval: a policy's approval rule is kept; a policy without
// one reads back without one.
func testPolicyApproval(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "db")
	p := jit.Policy{VMID: vm.ID, Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}},
		Approval: &jit.Approval{Required: 2, PendingLifetime: "PT2H"}, UpdatedAt: t0, UpdatedBy: "admin"}
	update(t, s, func(tx store.Tx) error { return tx.PutPolicy(p) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetPolicy(vm.ID)
		if err != nil {
			return err
		}
		if got.Approval == nil || *got.Approval != *p.Approval {
			t.Errorf("approval rule = %+v, want %+v", got.Approval, p.Approval)
		}
		return nil
	})
	p.Approval = nil
	update(t, s, func(tx store.Tx) error { return tx.PutPolicy(p) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetPolicy(vm.ID)
		if err == nil && got.Approval != nil {
			t.Errorf("approval rule after its removal = %+v", got.Approval)
		}
		return err
	})
}

// testRequestStates: a pending request keeps what its approval needs; it
// moves out of pending once, whoever tries twice; lists select by state
// and group; the earliest wait's end is known.
func testRequestStates(t *testing.T, s store.Store) {
	until, later := t0.Add(time.Hour), t0.Add(2*time.Hour)
	asked := &jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: "vm-prod-db", Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}, Justification: "fix"}
	pending := jit.Request{ID: "r1", User: "ann", Address: "198.51.100.7", Justification: "fix", CreatedAt: t0, Status: jit.RequestPending,
		Asked: asked, Group: "prod", Required: 2, ExpiresAt: &until}
	other := pending
	other.ID, other.Group, other.ExpiresAt, other.CreatedAt = "r2", "dev", &later, t0.Add(time.Second)
	plain := jit.Request{ID: "r3", User: "bob", Address: "198.51.100.8", CreatedAt: t0}
	update(t, s, func(tx store.Tx) error {
		for _, r := range []jit.Request{pending, other, plain} {
			if err := tx.CreateRequest(r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetRequest("r1")
		if err != nil {
			return err
		}
		if got.Status != jit.RequestPending || got.Group != "prod" || got.Required != 2 || got.ExpiresAt == nil || !got.ExpiresAt.Equal(until) ||
			got.Asked == nil || got.Asked.VirtualMachines[0].Ports[0].Duration != "PT1H" {
			t.Errorf("GetRequest = %+v", got)
		}
		if got, err := tx.GetRequest("r3"); err != nil || got.Status != jit.RequestApproved || got.ExpiresAt != nil {
			t.Errorf("a request made without approval = %+v, %v", got, err)
		}
		if _, err := tx.GetRequest("nope"); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("GetRequest(nope): %v", err)
		}
		list, err := tx.ListRequests(store.RequestFilter{Status: jit.RequestPending, Groups: []string{"prod"}})
		if err != nil || len(list) != 1 || list[0].ID != "r1" {
			t.Errorf("pending in prod = %+v, %v", list, err)
		}
		due, err := tx.ListRequests(store.RequestFilter{PendingBy: until})
		if err != nil || len(due) != 1 || due[0].ID != "r1" {
			t.Errorf("pending by %s = %+v, %v", until, due, err)
		}
		// The approvers' queue pages after (wait's end, id), and leaves
		// out one user's requests.
		page, err := tx.ListRequests(store.RequestFilter{PendingBy: later, AfterPending: until, AfterID: "r1"})
		if err != nil || len(page) != 1 || page[0].ID != "r2" {
			t.Errorf("pending after (%s, r1) = %+v, %v; want r2", until, page, err)
		}
		page, err = tx.ListRequests(store.RequestFilter{PendingBy: later, AfterPending: until, AfterID: ""})
		if err != nil || len(page) != 2 || page[0].ID != "r1" {
			t.Errorf("pending after (%s, \"\") = %+v, %v; want r1, r2", until, page, err)
		}
		if page, err := tx.ListRequests(store.RequestFilter{PendingBy: later, NotUser: "ann"}); err != nil || len(page) != 0 {
			t.Errorf("pending not of ann = %+v, %v; want none", page, err)
		}
		next, ok, err := tx.NextPendingEnd()
		if err != nil || !ok || !next.Equal(until) {
			t.Errorf("NextPendingEnd = %s, %v, %v", next, ok, err)
		}
		return nil
	})
	decided := pending
	at := t0.Add(time.Minute)
	decided.Status, decided.DecidedAt = jit.RequestDenied, &at
	decided.Decisions = []jit.Decision{{User: "cat", Reason: "not now", Time: at}}
	for i, want := range []bool{true, false} {
		update(t, s, func(tx store.Tx) error {
			ok, err := tx.SetRequestState(decided, jit.RequestPending)
			if ok != want {
				t.Errorf("SetRequestState #%d = %v, want %v", i+1, ok, want)
			}
			return err
		})
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetRequest("r1")
		if err == nil && (got.Status != jit.RequestDenied || len(got.Decisions) != 1 || got.Decisions[0].Reason != "not now" || got.ExpiresAt != nil || got.DecidedAt == nil) {
			t.Errorf("denied request = %+v", got)
		}
		if next, ok, err := tx.NextPendingEnd(); err != nil || !ok || !next.Equal(later) {
			t.Errorf("NextPendingEnd after the decision = %s, %v, %v", next, ok, err)
		}
		return err
	})
}
