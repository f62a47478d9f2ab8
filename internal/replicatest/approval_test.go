package replicatest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestApprovalAcrossReplicas: a VM whose policy needs two approvers; its
// agent watches through replica A. A request made through A and approved
// by one approver through B opens nothing; the second approval, through
// B, opens the port in the agent's desired state on A at once; a request
// denied through B never reaches the agent.
func TestApprovalAcrossReplicas(t *testing.T) {
	a, b := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if _, err := a.Admin.CreateGroup(ctx, "appr"); err != nil {
		t.Fatal(err)
	}
	et, err := a.Admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "appr"})
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := a.Client(et.Secret).Enroll(ctx, jit.Enrollment{Name: "appr-vm", Hostname: "appr-vm", OS: "linux", Addresses: []string{"192.0.2.20"}})
	if err != nil {
		t.Fatal(err)
	}
	vmID := enrolled.VM.ID
	if _, err := b.Admin.PutPolicy(ctx, vmID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"},
		MaxRequestAccessDuration: "PT3H"}}, Approval: &jit.Approval{Required: 2}}); err != nil {
		t.Fatal(err)
	}
	person := func(s *ajardtest.Server, name, role string) *client.Client {
		t.Helper()
		if _, err := a.Admin.CreateUser(ctx, jit.NewUser{Name: name}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Admin.CreateRoleBinding(ctx, name, role, "appr"); err != nil {
			t.Fatal(err)
		}
		tk, err := a.Admin.CreateToken(ctx, jit.NewToken{User: name})
		if err != nil {
			t.Fatal(err)
		}
		return s.Client(tk.Secret)
	}
	reqr := person(a, "rene", jit.RoleRequesterAnySource)
	bob, cat := person(b, "bob", jit.RoleApprover), person(b, "cat", jit.RoleApprover)

	agent := a.Client(enrolled.Secret)
	st, err := agent.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Lock) != 1 || len(st.Grants) != 0 {
		t.Fatalf("desired state before any request: %+v", st)
	}
	// next waits, through A, for the desired state after revision rev.
	next := func(rev int64) (jit.DesiredState, time.Time) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := agent.WatchDesiredState(wctx, rev)
		if err != nil {
			t.Fatalf("watch after revision %d: %v", rev, err)
		}
		return s, time.Now()
	}
	ask := func(src string) jit.Request {
		t.Helper()
		r, err := reqr.RequestAccess(ctx, jit.AccessRequest{Justification: "INC-1", VirtualMachines: []jit.VMRequest{{ID: vmID,
			Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: src, Duration: "PT1H"}}}}})
		if err != nil || r.Status != jit.RequestPending {
			t.Fatalf("request through A: %+v, %v", r, err)
		}
		return r
	}

	denied := ask("2001:db8:1::1")
	if _, err := bob.Deny(ctx, denied.ID, "not now"); err != nil {
		t.Fatalf("deny through B: %v", err)
	}
	r := ask("2001:db8:2::1")
	if got, err := bob.Approve(ctx, r.ID, "ok"); err != nil || got.Status != jit.RequestPending || len(got.Grants) != 0 {
		t.Fatalf("first approval through B: %+v, %v; want still pending", got, err)
	}
	// Nothing of either request reached the agent: the state is as it was.
	wctx, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	if s, err := agent.WatchDesiredState(wctx, st.Revision); err == nil && len(s.Grants) != 0 {
		t.Fatalf("the agent got grants before the second approval: %+v", s.Grants)
	}
	stop()

	got, err := cat.Approve(ctx, r.ID, "ok too")
	approved := time.Now()
	if err != nil || got.Status != jit.RequestApproved || len(got.Grants) != 1 {
		t.Fatalf("second approval through B: %+v, %v", got, err)
	}
	g := got.Grants[0]
	if g.StartTime.Before(r.CreatedAt) || g.EndTime.Sub(g.StartTime) != time.Hour {
		t.Errorf("grant %v to %v: its hour should count from the approval, not the request (%v)", g.StartTime, g.EndTime, r.CreatedAt)
	}
	s, seen := next(st.Revision)
	for !slices.ContainsFunc(s.Grants, func(x jit.GrantRule) bool { return x.ID == g.ID }) {
		if time.Since(approved) > 5*time.Second {
			t.Fatalf("the approved grant did not reach the agent on A within 5s: %+v", s.Grants)
		}
		s, seen = next(s.Revision)
	}
	t.Logf("second approval through B to the agent's watch on A: %v", max(0, seen.Sub(approved)))
	if len(s.Grants) != 1 || s.Grants[0].Source != "2001:db8:2::1/128" {
		t.Errorf("agent's grants %+v, want only the approved one (the denied request opens nothing)", s.Grants)
	}
}
