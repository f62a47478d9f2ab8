package control

import (
	"context"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// GetPolicy returns the JIT policy of a VM.
func (c *Control) GetPolicy(ctx context.Context, a *Actor, vmID string) (jit.Policy, error) {
	var p jit.Policy
	err := c.store.View(ctx, func(tx store.Tx) error {
		if _, err := getVM(tx, a, vmID); err != nil {
			return err
		}
		var err error
		p, err = tx.GetPolicy(vmID)
		return err
	})
	return p, err
}

// PutPolicy creates or replaces the JIT policy of a VM. Active grants on
// ports the new policy no longer has end with it.
func (c *Control) PutPolicy(ctx context.Context, a *Actor, vmID string, p jit.Policy) (jit.Policy, error) {
	if err := jit.ValidatePolicy(&p); err != nil {
		return p, err
	}
	p.VMID, p.UpdatedAt, p.UpdatedBy = vmID, c.Now(), a.Name()
	err := c.store.Update(ctx, func(tx store.Tx) error {
		vm, err := getVM(tx, a, vmID)
		if err != nil {
			return err
		}
		if err := a.require(jit.PermManagePolicy, vm.Group, "change JIT policies"); err != nil {
			return err
		}
		op := jit.OpPolicyUpdate
		if _, err := tx.GetPolicy(vmID); jit.ErrorCode(err) == jit.ENotFound {
			op = jit.OpPolicyCreate
		} else if err != nil {
			return err
		}
		if err := tx.PutPolicy(p); err != nil {
			return err
		}
		active, err := tx.ListGrants(store.GrantFilter{VMID: vmID, Status: jit.GrantActive})
		if err != nil {
			return err
		}
		for _, g := range active {
			if !covered(p, g) {
				if err := c.endGrant(tx, a, vm, g, jit.GrantRevoked, "port removed from the JIT policy"); err != nil {
					return err
				}
			}
		}
		if err := tx.BumpRevision(vmID); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, op, jit.OutcomeSuccess, &vm, p))
	})
	return p, err
}

// covered reports whether a grant's port and protocol are still in p.
func covered(p jit.Policy, g jit.Grant) bool {
	for _, r := range p.Ports {
		if r.Number == g.Port && (r.Protocol == jit.ProtoAny || r.Protocol == g.Protocol) {
			return true
		}
	}
	return false
}

// DeletePolicy disables JIT on a VM: the lock goes and its grants end.
func (c *Control) DeletePolicy(ctx context.Context, a *Actor, vmID string) error {
	return c.store.Update(ctx, func(tx store.Tx) error {
		vm, err := getVM(tx, a, vmID)
		if err != nil {
			return err
		}
		if err := a.require(jit.PermManagePolicy, vm.Group, "change JIT policies"); err != nil {
			return err
		}
		if err := tx.DeletePolicy(vmID); err != nil {
			return err
		}
		if err := c.endAll(tx, a, vm, "JIT disabled"); err != nil {
			return err
		}
		if err := tx.BumpRevision(vmID); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpPolicyDelete, jit.OutcomeSuccess, &vm, nil))
	})
}
