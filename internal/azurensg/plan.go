package azurensg

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/jit"
)

// nsgPlan is what Apply changes in one NSG, in this order: delete stale
// grants (closing first), write the lock, write the grants, delete stale
// locks (opening last).
type nsgPlan struct {
	deleteFirst []string
	put         []ruleSpec
	deleteLast  []string
	// shadowed are the other Allow rules the lock overrides; bypass are
	// those ahead of it (from narrower sources) that it leaves in force.
	shadowed, bypass []*armnetwork.SecurityRule
}

func (p nsgPlan) empty() bool {
	return len(p.deleteFirst) == 0 && len(p.put) == 0 && len(p.deleteLast) == 0
}

// planNSG plans the changes that turn the rules of NSG nsgName into ones
// holding exactly denies and allows of the VM with tag at ip, beside every
// rule that is not this VM's, untouched.
func planNSG(nsgName string, rules []*armnetwork.SecurityRule, vmName, tag string, ip netip.Addr, denies, allows []ruleSpec) (nsgPlan, error) {
	var plan nsgPlan
	wanted := map[string]bool{}
	for _, s := range append(slices.Clone(denies), allows...) {
		wanted[s.name] = true
	}
	owned := map[string]*armnetwork.SecurityRule{}
	occupied := map[int32]bool{}
	var foreign []*armnetwork.SecurityRule
	for _, r := range rules {
		if r == nil || r.Name == nil {
			continue
		}
		name := *r.Name
		if !ownedBy(name, tag) {
			foreign = append(foreign, r)
		} else {
			owned[name] = r
			if !wanted[name] {
				if strings.HasPrefix(name, prefixAllow) {
					plan.deleteFirst = append(plan.deleteFirst, name)
					continue // its priority is free once it is gone
				}
				plan.deleteLast = append(plan.deleteLast, name)
			}
		}
		if isInbound(r.Properties) {
			occupied[deref(r.Properties.Priority)] = true
		}
	}
	slices.Sort(plan.deleteFirst)
	slices.Sort(plan.deleteLast)

	// The lock must come before every other Allow rule that lets the whole
	// internet reach some of the locked traffic.
	limit, limitRule := int32(maxPriority+1), ""
	var overlapping []*armnetwork.SecurityRule
	for _, r := range foreign {
		p := r.Properties
		if !isInbound(p) || deref(p.Access) != armnetwork.SecurityRuleAccessAllow || !overlapsAny(p, denies, ip) {
			continue
		}
		overlapping = append(overlapping, r)
		if prio := deref(p.Priority); fromAnywhere(p) && prio < limit {
			limit, limitRule = prio, *r.Name
		}
	}
	slices.SortFunc(overlapping, func(a, b *armnetwork.SecurityRule) int {
		return cmp.Compare(deref(a.Properties.Priority), deref(b.Properties.Priority))
	})

	put, lockAt, ok := place(occupied, owned, denies, allows, limit, true)
	if !ok {
		put, lockAt, ok = place(occupied, owned, denies, allows, limit, false)
	}
	if !ok {
		where := fmt.Sprintf("from %d to %d", minPriority, maxPriority)
		if limitRule != "" {
			where = fmt.Sprintf("ahead of rule %s (priority %d), which allows the locked ports from anywhere", limitRule, limit)
		}
		return nsgPlan{}, jit.Errorf(jit.EConflict,
			"no free priority in network security group %s for ajar's %d rules for VM %s %s",
			nsgName, len(denies)+len(allows), vmName, where)
	}
	for _, r := range overlapping {
		if deref(r.Properties.Priority) > lockAt {
			plan.shadowed = append(plan.shadowed, r)
		} else {
			plan.bypass = append(plan.bypass, r)
		}
	}
	plan.put = put
	return plan, nil
}

// place gives the denies priorities below limit and the allows priorities
// below every deny, keeping the priorities rules already have where they
// are still valid (for denies only when keep is set). It returns the rules
// that need writing and the priority of the first deny; ok is false when
// priorities run out.
func place(occupied map[int32]bool, owned map[string]*armnetwork.SecurityRule, denies, allows []ruleSpec, limit int32, keep bool) (put []ruleSpec, lockAt int32, ok bool) {
	occ := maps.Clone(occupied)
	current := func(name string) (*armnetwork.SecurityRule, int32) {
		r := owned[name]
		if r == nil || !isInbound(r.Properties) {
			return nil, 0
		}
		return r, deref(r.Properties.Priority)
	}
	highestFree := func(below, own int32) int32 {
		for p := min(below-1, maxPriority); p >= minPriority; p-- {
			if !occ[p] || p == own {
				return p
			}
		}
		return 0
	}

	dmin := limit
	var freed []int32
	for _, d := range denies {
		cur, prio := current(d.name)
		if cur != nil && keep && prio >= minPriority && prio < limit {
			d.priority = prio
		} else {
			if d.priority = highestFree(limit, prio); d.priority == 0 {
				return nil, 0, false
			}
			occ[d.priority] = true
			if cur != nil && prio != d.priority {
				freed = append(freed, prio) // free once the deny has moved
			}
		}
		dmin = min(dmin, d.priority)
		if cur == nil || prio != d.priority || !d.sameAs(cur) {
			put = append(put, d)
		}
	}
	for _, p := range freed {
		delete(occ, p)
	}
	for _, a := range allows {
		cur, prio := current(a.name)
		if cur != nil && prio >= minPriority && prio < dmin {
			a.priority = prio
		} else {
			if a.priority = highestFree(dmin, 0); a.priority == 0 {
				return nil, 0, false
			}
			occ[a.priority] = true
		}
		if cur == nil || prio != a.priority || !a.sameAs(cur) {
			put = append(put, a)
		}
	}
	return put, dmin, true
}

// overlapsAny reports whether the rule p applies to some traffic one of the
// denies blocks.
func overlapsAny(p *armnetwork.SecurityRulePropertiesFormat, denies []ruleSpec, ip netip.Addr) bool {
	for _, d := range denies {
		if overlaps(p, d.protocol, d.ports, ip) {
			return true
		}
	}
	return false
}

// overlaps reports whether the rule p applies to some traffic to ip on one
// of ports with protocol proto.
func overlaps(p *armnetwork.SecurityRulePropertiesFormat, proto armnetwork.SecurityRuleProtocol, ports []int, ip netip.Addr) bool {
	if !coversProto(deref(p.Protocol), proto) || !coversDest(p, ip) {
		return false
	}
	for _, port := range ports {
		if coversPort(p, port) {
			return true
		}
	}
	return false
}
