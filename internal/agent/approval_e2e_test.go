package agent_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestAgentOpensOnApproval: between network namespaces, a request under an
// approval rule opens nothing while pending or once denied; approved, it
// opens the port, which stays open for its whole duration counted from the
// approval (not from the request), then closes.
func TestAgentOpensOnApproval(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	adm := tb.srv.Admin
	_, err := adm.PutPolicy(ctx, tb.vmID, jit.Policy{Ports: []jit.PortRule{{Number: tb.port, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}},
		Approval: &jit.Approval{Required: 1}})
	must(t, err)
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	_, err = adm.CreateUser(ctx, jit.NewUser{Name: "carol"})
	must(t, err)
	_, err = adm.CreateRoleBinding(ctx, "carol", jit.RoleApprover, "lab")
	must(t, err)
	tk, err := adm.CreateToken(ctx, jit.NewToken{User: "carol", Name: "e2e"})
	must(t, err)
	carol := tb.srv.ClientVia(tk.Secret, dialer(tb.b, 5*time.Second))
	ask := func(duration string) jit.Request {
		t.Helper()
		r, err := tb.alice.RequestAccess(ctx, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: tb.vmID,
			Ports: []jit.PortRequest{{Number: tb.port, Protocol: "TCP", Duration: duration}}}}})
		must(t, err)
		if r.Status != jit.RequestPending || len(r.Grants) != 0 {
			t.Fatalf("request under an approval rule: %+v", r)
		}
		return r
	}
	noGrants := func(when string) {
		t.Helper()
		var st jit.DesiredState
		must(t, adm.Do(ctx, http.MethodGet, "/api/v1/vms/"+tb.vmID+"/desired-state", nil, &st))
		if len(st.Grants) != 0 || tb.tcpOpen(tb.a, vm4) {
			t.Fatalf("%s: desired grants %+v, port open %v", when, st.Grants, tb.tcpOpen(tb.a, vm4))
		}
	}

	denied := ask("PT1H")
	noGrants("pending")
	_, err = carol.Deny(ctx, denied.ID, "not now")
	must(t, err)
	noGrants("denied")

	r := ask("PT6S")
	time.Sleep(3 * time.Second) // counted from the request, the grant would end 3 s after approval
	approvedAt := time.Now()
	got, err := carol.Approve(ctx, r.ID, "")
	must(t, err)
	if got.Status != jit.RequestApproved || len(got.Grants) != 1 {
		t.Fatalf("approved request: %+v", got)
	}
	tb.eventually("approval opens the port", 5*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	time.Sleep(time.Until(approvedAt.Add(4 * time.Second)))
	if !tb.tcpOpen(tb.a, vm4) {
		t.Fatal("port closed 4 s after approval; a PT6S grant counted from approval is open until 6 s")
	}
	tb.eventually("grant closes at its end", 6*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	if d := time.Since(approvedAt); d < 5*time.Second {
		t.Errorf("port closed %s after approval, before the grant's 6 s", d)
	}
}
