package storetest

import (
	"testing"

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
