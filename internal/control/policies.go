package control

import (
	"context"
	"fmt"
	"strings"
	"time"

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

// PutPolicy creates or replaces the JIT policy of a VM. The VM's active
// grants follow the new policy in the same transaction (followPolicy).
func (c *Control) PutPolicy(ctx context.Context, a *Actor, vmID string, p jit.Policy) (jit.Policy, error) {
	if err := jit.ValidatePolicy(&p); err != nil {
		return p, err
	}
	p.VMID, p.UpdatedAt, p.UpdatedBy = vmID, c.Now(), a.Name()
	var ends []time.Time
	err := c.store.Update(ctx, func(tx store.Tx) error {
		ends = nil
		vm, err := getVM(tx, a, vmID)
		if err != nil {
			return err
		}
		if err := a.require(jit.PermManagePolicy, vm.Group, "change JIT policies"); err != nil {
			return err
		}
		op := jit.OpPolicyUpdate
		if old, err := tx.GetPolicy(vmID); jit.ErrorCode(err) == jit.ENotFound {
			op = jit.OpPolicyCreate
			p.CreatedAt = p.UpdatedAt
		} else if err != nil {
			return err
		} else {
			p.CreatedAt = old.CreatedAt
		}
		if err := tx.PutPolicy(p); err != nil {
			return err
		}
		if err := tx.BumpRevision(vmID); err != nil {
			return err
		}
		if err := tx.AppendEvent(c.event(a, op, jit.OutcomeSuccess, &vm, p)); err != nil {
			return err
		}
		ends, err = c.followPolicy(tx, a, vm, &p, PolicyChange{Operation: op, At: p.UpdatedAt})
		return err
	})
	for _, end := range ends {
		c.noteEnd(end)
	}
	return p, err
}

// PolicyChange names, in the activity event of each grant a policy change
// ended or shortened, the change that did it: the policy event of the same
// VM, actor and time.
type PolicyChange struct {
	Operation   string    `json:"operation"` // policy.create, policy.update or policy.delete
	At          time.Time `json:"at"`
	AzurePolicy string    `json:"azurePolicy,omitempty"`
}

// followPolicy re-checks the active grants of vm against its new policy p
// (nil: JIT disabled), as part of the change's transaction, whose policy
// event the caller appends first. A grant whose port and protocol are no
// longer in the policy, or whose source it no longer allows, is revoked; a
// grant longer than its rule's new maximum is shortened to start plus that
// maximum, or revoked when that is already past. Each outcome is one
// event naming the change. It returns the new end times, for the expirer.
func (c *Control) followPolicy(tx store.Tx, a *Actor, vm jit.VM, p *jit.Policy, change PolicyChange) ([]time.Time, error) {
	active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
	if err != nil {
		return nil, err
	}
	now := c.Now()
	var ends []time.Time
	for _, g := range active {
		if !g.EndTime.After(now) {
			continue // the expirer ends it with its own end time
		}
		why, end := "", time.Time{}
		if p == nil {
			why = "JIT disabled"
		} else {
			why, end = checkGrant(*p, g)
		}
		if why == "" && !end.IsZero() && !end.After(now) {
			why = fmt.Sprintf("longer than the new maximum of port %d/%s; its new end %s has passed", g.Port, g.Protocol, end.Format(time.RFC3339))
		}
		switch {
		case why != "":
			if err := c.endGrant(tx, a, vm, g, jit.GrantRevoked, why, change); err != nil {
				return nil, err
			}
		case !end.IsZero():
			ok, err := tx.ShortenGrant(g.ID, end)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			d := grantDetails(g)
			d["endTime"], d["previousEndTime"], d["cause"] = end, g.EndTime, change
			d["reason"] = fmt.Sprintf("longer than the new maximum of port %d/%s", g.Port, g.Protocol)
			if err := tx.AppendEvent(c.event(a, jit.OpGrantShorten, jit.OutcomeSuccess, &vm, d)); err != nil {
				return nil, err
			}
			ends = append(ends, end)
		}
	}
	return ends, nil
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

// checkGrant checks an active grant against policy p: it returns why the
// policy no longer allows the grant at all, or else the earlier end time
// the policy's maximum sets it (zero when its end is within the maximum).
func checkGrant(p jit.Policy, g jit.Grant) (why string, end time.Time) {
	var rule *jit.PortRule
	for i, r := range p.Ports {
		if r.Number == g.Port && (r.Protocol == jit.ProtoAny || r.Protocol == g.Protocol) {
			rule = &p.Ports[i]
			break
		}
	}
	if rule == nil {
		return fmt.Sprintf("port %d/%s removed from the JIT policy", g.Port, g.Protocol), time.Time{}
	}
	src, err := jit.ParsePrefix(g.Source)
	if err != nil || !rule.Allows(src) {
		return fmt.Sprintf("source %s no longer allowed on port %d by the JIT policy (%s)", g.Source, g.Port, strings.Join(rule.AllowedSourceAddressPrefixes, ", ")), time.Time{}
	}
	// A request may end up to a second past the maximum (see jit.PlanGrant):
	// only a grant longer than that is cut.
	if max := g.StartTime.Add(rule.MaxDuration()); g.EndTime.After(max.Add(time.Second)) {
		return "", max
	}
	return "", time.Time{}
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
		if err := tx.BumpRevision(vmID); err != nil {
			return err
		}
		if err := tx.AppendEvent(c.event(a, jit.OpPolicyDelete, jit.OutcomeSuccess, &vm, nil)); err != nil {
			return err
		}
		_, err = c.followPolicy(tx, a, vm, nil, PolicyChange{Operation: jit.OpPolicyDelete, At: c.Now()})
		return err
	})
}
