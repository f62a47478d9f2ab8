package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestAgentFollowsPolicyRoleAndVMChanges: between network namespaces, a
// grant closes on the host as soon as a policy change, a removed role
// binding or the VM's deletion ends it; the lock stays.
func TestAgentFollowsPolicyRoleAndVMChanges(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	adm := tb.srv.Admin
	tb.setPolicy(false)
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })

	tb.request(tb.alice, "TCP", "0.0.0.0/0", "PT1H")
	tb.request(tb.bob, "TCP", "", "PT1H")
	tb.eventually("grants open the port", 5*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) && tb.tcpOpen(tb.b, vm4) })

	// Narrowed to B's address: alice's grant for anywhere ends.
	_, err := adm.PutPolicy(ctx, tb.vmID, jit.Policy{Ports: []jit.PortRule{{Number: tb.port, Protocol: "*",
		AllowedSourceAddressPrefixes: []string{b4.String()}, MaxRequestAccessDuration: "PT1H"}}})
	must(t, err)
	tb.eventually("narrowed policy closes A", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	if !tb.tcpOpen(tb.b, vm4) {
		t.Fatal("B's grant, still allowed, closed too")
	}

	// Bob's only binding goes, and his grant with it.
	bs, err := adm.ListRoleBindings(ctx, "bob")
	must(t, err)
	if len(bs) != 1 {
		t.Fatalf("bob's bindings %+v, want one", bs)
	}
	must(t, adm.DeleteRoleBinding(ctx, bs[0].ID))
	tb.eventually("removed binding closes B", 5*time.Second, func() bool { return !tb.tcpOpen(tb.b, vm4) })

	// Deleting the VM ends its grants on the host too; the lock stays.
	tb.setPolicy(false)
	tb.request(tb.alice, "TCP", "", "PT1H")
	tb.eventually("new grant opens A", 5*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	must(t, adm.DeleteVM(ctx, tb.vmID))
	tb.eventually("deleted VM closes A", 10*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	if tb.tcpOpen(tb.b, vm4) {
		t.Fatal("port open to B after the VM's deletion")
	}
}
