package control

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Azure JIT policies.
//
// Defender for Cloud's API names a JIT policy by subscription, resource
// group, location and name, and one such policy holds several VMs. ajar
// keeps one policy per VM; the Azure policy a VM's policy belongs to is
// kept in the VM's labels, changed in the same transaction as the policy:
//
//   - subscription: LabelAzureSubscription, else the default subscription;
//   - resource group: the VM's group (Azure compares it case-insensitively);
//   - location: LabelAzureLocation, else the default location;
//   - name: LabelAzurePolicy, else "default" (the name Azure's portal
//     uses), so VMs whose policy was set through ajar's own API show up
//     in their group's "default" Azure policy.
//
// A VM belongs to at most one Azure policy, as in Azure.

// Labels of the Azure mapping. LabelAzureSubscription and
// LabelAzureLocation are those Azure discovery sets (azurensg).
const (
	LabelAzureSubscription = "azure.subscription"
	LabelAzureLocation     = "azure.location"
	LabelAzurePolicy       = "azure.jitPolicy"
)

// DefaultAzurePolicy is the name of the Azure policy of VMs that have none.
const DefaultAzurePolicy = "default"

// AzureDefaults fill in what a VM's labels do not say.
type AzureDefaults struct {
	Subscription string
	Location     string
}

// AzureKey names one Azure JIT policy. Subscription and Location are lower
// case; Group is the ajar group; compare keys with Same.
type AzureKey struct {
	Subscription string
	Group        string
	Location     string
	Name         string
}

// Same reports whether k and o name the same Azure policy; Azure compares
// every part case-insensitively.
func (k AzureKey) Same(o AzureKey) bool {
	return strings.EqualFold(k.Subscription, o.Subscription) && strings.EqualFold(k.Group, o.Group) &&
		strings.EqualFold(k.Location, o.Location) && strings.EqualFold(k.Name, o.Name)
}

// NormalizeLocation returns Azure's short form of a location: lower case,
// no spaces ("West Europe" is "westeurope").
func NormalizeLocation(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// AzureKeyOf returns the Azure policy a VM's policy belongs to.
func AzureKeyOf(vm jit.VM, d AzureDefaults) AzureKey {
	k := AzureKey{Subscription: d.Subscription, Group: vm.Group, Location: d.Location, Name: DefaultAzurePolicy}
	if s := vm.Labels[LabelAzureSubscription]; s != "" {
		k.Subscription = s
	}
	if l := vm.Labels[LabelAzureLocation]; l != "" {
		k.Location = l
	}
	if n := vm.Labels[LabelAzurePolicy]; n != "" {
		k.Name = n
	}
	k.Subscription, k.Location = strings.ToLower(k.Subscription), NormalizeLocation(k.Location)
	return k
}

// groupFold returns the existing group whose name is name but for case.
// Each ajar group is a resource group in the Azure-compatible API, and
// Azure resource groups ignore case, so ajar keeps group names unique
// case-insensitively.
func groupFold(tx store.Tx, name string) (jit.Group, bool, error) {
	groups, err := tx.ListGroups()
	if err != nil {
		return jit.Group{}, false, err
	}
	for _, g := range groups {
		if strings.EqualFold(g.Name, name) {
			return g, true, nil
		}
	}
	return jit.Group{}, false, nil
}

// azureLocationFixed reports whether a VM's location is the cloud's (an
// Azure VM) rather than ajar's to choose.
func azureLocationFixed(vm jit.VM) bool {
	return vm.Backend == jit.BackendAzure && vm.Labels[LabelAzureLocation] != ""
}

// AzureVMPolicy is one VM of an Azure policy and its port rules, with
// the rules as the client wrote them (nil, or one per port), which the
// Azure view shows back.
type AzureVMPolicy struct {
	VMID    string
	Ports   []jit.PortRule
	Written []jit.PortRuleText
}

// PutAzurePolicy creates or replaces the Azure policy key: each listed VM
// gets a policy with its ports (keeping its justification, connection and
// approval settings) and joins the Azure policy; VMs of the Azure policy that are
// not listed lose their policy, as JIT disabled. It all happens in one
// transaction, with the usual activity events. A VM of another Azure
// policy is a conflict; an Azure VM in another location is invalid.
func (c *Control) PutAzurePolicy(ctx context.Context, a *Actor, key AzureKey, d AzureDefaults, vms []AzureVMPolicy) error {
	if len(vms) == 0 {
		return jit.Invalid("properties.virtualMachines", "a JIT policy needs at least one virtual machine")
	}
	if len(vms) > 1000 {
		return jit.Invalid("properties.virtualMachines", "at most 1000 virtual machines per JIT policy, got %d", len(vms))
	}
	if err := ValidName("name", key.Name); err != nil {
		return err
	}
	policies := make([]jit.Policy, len(vms))
	seen := map[string]bool{}
	for i, v := range vms {
		field := fmt.Sprintf("properties.virtualMachines[%d]", i)
		if seen[v.VMID] {
			return jit.Invalid(field+".id", "a virtual machine is listed twice")
		}
		seen[v.VMID] = true
		if v.Written != nil && len(v.Written) != len(v.Ports) {
			return jit.Invalid(field+".ports", "%d port rules but %d as written", len(v.Ports), len(v.Written))
		}
		policies[i] = jit.Policy{Ports: slices.Clone(v.Ports), Written: v.Written}
		if err := jit.ValidatePolicy(&policies[i]); err != nil {
			return targeted(prefixTarget(err, field), field)
		}
	}
	azureID := azurePolicyRef(key)
	now := c.Now()
	var ends []time.Time
	defer func() {
		for _, end := range ends {
			c.noteEnd(end)
		}
	}()
	return c.store.Update(ctx, func(tx store.Tx) error {
		ends = nil
		for i, v := range vms {
			field := fmt.Sprintf("properties.virtualMachines[%d]", i)
			vm, err := getVM(tx, a, v.VMID)
			if err != nil {
				return targeted(err, field+".id")
			}
			if err := a.require(jit.PermManagePolicy, vm.Group, "change JIT policies"); err != nil {
				return err
			}
			if !strings.EqualFold(vm.Group, key.Group) {
				return jit.Invalid(field+".id", "VM %s is in resource group %s, not %s", vm.Name, vm.Group, key.Group)
			}
			cur := AzureKeyOf(vm, d)
			if !strings.EqualFold(cur.Subscription, key.Subscription) {
				return jit.Invalid(field+".id", "VM %s is in subscription %s, not %s", vm.Name, cur.Subscription, key.Subscription)
			}
			if azureLocationFixed(vm) && cur.Location != key.Location {
				return jit.Invalid(field+".id", "VM %s is in location %s, not %s", vm.Name, cur.Location, key.Location)
			}
			old, err := tx.GetPolicy(vm.ID)
			op := jit.OpPolicyUpdate
			switch {
			case jit.ErrorCode(err) == jit.ENotFound:
				op = jit.OpPolicyCreate
			case err != nil:
				return err
			case !cur.Same(key):
				return &jit.Error{Code: jit.EConflict, Target: field + ".id",
					Message: fmt.Sprintf("VM %s already belongs to JIT policy %s in location %s; remove it from that policy first", vm.Name, cur.Name, cur.Location)}
			}
			p := policies[i]
			p.VMID, p.UpdatedAt, p.UpdatedBy, p.CreatedAt = vm.ID, now, a.Name(), now
			if op == jit.OpPolicyUpdate {
				p.RequireJustification, p.CloseConnectionsOnExpiry, p.Approval = old.RequireJustification, old.CloseConnectionsOnExpiry, old.Approval
				p.CreatedAt = old.CreatedAt
			}
			if err := tx.PutPolicy(p); err != nil {
				return err
			}
			labels := maps.Clone(vm.Labels)
			if labels == nil {
				labels = map[string]string{}
			}
			labels[LabelAzurePolicy] = key.Name
			if !azureLocationFixed(vm) {
				labels[LabelAzureLocation] = key.Location
			}
			if !maps.Equal(labels, vm.Labels) {
				vm.Labels = labels
				if err := tx.UpdateVM(vm); err != nil {
					return err
				}
			}
			if err := tx.BumpRevision(vm.ID); err != nil {
				return err
			}
			if err := tx.AppendEvent(c.event(a, op, jit.OutcomeSuccess, &vm, azurePolicyDetails{p, azureID})); err != nil {
				return err
			}
			vmEnds, err := c.followPolicy(tx, a, vm, &p, PolicyChange{Operation: op, At: now, AzurePolicy: azureID})
			if err != nil {
				return err
			}
			ends = append(ends, vmEnds...)
		}
		// VMs that were in the Azure policy and are no longer listed.
		return c.leaveAzurePolicy(tx, a, key, d, seen, azureID)
	})
}

// azurePolicyDetails is a policy event's details with the Azure policy.
type azurePolicyDetails struct {
	jit.Policy
	AzurePolicy string `json:"azurePolicy"`
}

// azurePolicyRef names an Azure policy in activity events.
func azurePolicyRef(k AzureKey) string {
	return fmt.Sprintf("%s/%s/%s/%s", k.Subscription, k.Group, k.Location, k.Name)
}

// prefixTarget puts field in front of the target of a *jit.Error.
func prefixTarget(err error, field string) error {
	if e, ok := err.(*jit.Error); ok && e.Target != "" {
		return &jit.Error{Code: e.Code, Message: e.Message, Target: field + "." + e.Target}
	}
	return err
}

// leaveAzurePolicy disables JIT on the VMs of the Azure policy key whose
// ids are not in keep, and drops their policy label.
func (c *Control) leaveAzurePolicy(tx store.Tx, a *Actor, key AzureKey, d AzureDefaults, keep map[string]bool, azureID string) error {
	members, err := azureMembers(tx, a, key, d)
	if err != nil {
		return err
	}
	for _, vm := range members {
		if keep[vm.ID] {
			continue
		}
		if err := a.require(jit.PermManagePolicy, vm.Group, "change JIT policies"); err != nil {
			return err
		}
		if err := tx.DeletePolicy(vm.ID); err != nil {
			return err
		}
		if _, ok := vm.Labels[LabelAzurePolicy]; ok {
			vm.Labels = maps.Clone(vm.Labels)
			delete(vm.Labels, LabelAzurePolicy)
			if err := tx.UpdateVM(vm); err != nil {
				return err
			}
		}
		if err := tx.BumpRevision(vm.ID); err != nil {
			return err
		}
		if err := tx.AppendEvent(c.event(a, jit.OpPolicyDelete, jit.OutcomeSuccess, &vm, map[string]string{"azurePolicy": azureID})); err != nil {
			return err
		}
		if _, err := c.followPolicy(tx, a, vm, nil, PolicyChange{Operation: jit.OpPolicyDelete, At: c.Now(), AzurePolicy: azureID}); err != nil {
			return err
		}
	}
	return nil
}

// azureMembers returns the VMs the actor may read that have a policy in
// the Azure policy key.
func azureMembers(tx store.Tx, a *Actor, key AzureKey, d AzureDefaults) ([]jit.VM, error) {
	vms, err := tx.ListVMs(store.VMFilter{Groups: a.readGroups()})
	if err != nil {
		return nil, err
	}
	pols, err := tx.ListPolicies(store.VMFilter{Groups: a.readGroups()})
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, p := range pols {
		has[p.VMID] = true
	}
	var out []jit.VM
	for _, vm := range vms {
		if has[vm.ID] && AzureKeyOf(vm, d).Same(key) {
			out = append(out, vm)
		}
	}
	return out, nil
}

// DeleteAzurePolicy disables JIT on every VM of the Azure policy key and
// returns how many there were (0: no such policy, nothing changed). As in
// Azure, permission comes before existence: a caller who may not change
// policies in the group is refused whether or not the policy exists.
func (c *Control) DeleteAzurePolicy(ctx context.Context, a *Actor, key AzureKey, d AzureDefaults) (int, error) {
	if err := a.require(jit.PermManagePolicy, key.Group, "change JIT policies"); err != nil {
		return 0, err
	}
	n := 0
	err := c.store.Update(ctx, func(tx store.Tx) error {
		members, err := azureMembers(tx, a, key, d)
		if err != nil {
			return err
		}
		n = len(members)
		return c.leaveAzurePolicy(tx, a, key, d, nil, azurePolicyRef(key))
	})
	return n, err
}

// AzurePolicyFilter selects Azure policies; empty fields match all.
type AzurePolicyFilter struct {
	Subscription string
	Group        string // compared case-insensitively, like Azure resource groups
	Location     string
	Name         string
	// Requests is how many recent requests to return per policy (0: none).
	Requests int
}

// AzureMember is one VM of an Azure policy and its ajar policy.
type AzureMember struct {
	VM     jit.VM
	Policy jit.Policy
}

// AzurePolicy is one Azure JIT policy: its VMs and its recent requests,
// newest first, each with only the grants on those VMs.
type AzurePolicy struct {
	Key      AzureKey
	Members  []AzureMember
	Requests []jit.Request
}

// AzurePolicies returns the Azure policies made of the VMs the actor may
// read, sorted by subscription, group, location and name.
func (c *Control) AzurePolicies(ctx context.Context, a *Actor, d AzureDefaults, f AzurePolicyFilter) ([]AzurePolicy, error) {
	var out []AzurePolicy
	err := c.store.View(ctx, func(tx store.Tx) error {
		vms, err := tx.ListVMs(store.VMFilter{Groups: a.readGroups()})
		if err != nil {
			return err
		}
		pols, err := tx.ListPolicies(store.VMFilter{Groups: a.readGroups()})
		if err != nil {
			return err
		}
		byVM := map[string]jit.Policy{}
		for _, p := range pols {
			byVM[p.VMID] = p
		}
		idx := map[AzureKey]int{}
		for _, vm := range vms {
			p, ok := byVM[vm.ID]
			if !ok {
				continue
			}
			k := AzureKeyOf(vm, d)
			if (f.Subscription != "" && !strings.EqualFold(f.Subscription, k.Subscription)) ||
				(f.Group != "" && !strings.EqualFold(f.Group, k.Group)) ||
				(f.Location != "" && NormalizeLocation(f.Location) != k.Location) ||
				(f.Name != "" && !strings.EqualFold(f.Name, k.Name)) {
				continue
			}
			// Azure names are case-insensitive: one entry per folded key.
			fk := AzureKey{strings.ToLower(k.Subscription), strings.ToLower(k.Group), k.Location, strings.ToLower(k.Name)}
			i, ok := idx[fk]
			if !ok {
				i = len(out)
				idx[fk] = i
				out = append(out, AzurePolicy{Key: k})
			}
			out[i].Members = append(out[i].Members, AzureMember{VM: vm, Policy: p})
		}
		if f.Requests > 0 {
			for i := range out {
				if out[i].Requests, err = c.azureRequests(tx, out[i].Members, f.Requests); err != nil {
					return err
				}
			}
		}
		return nil
	})
	slices.SortFunc(out, func(x, y AzurePolicy) int {
		return cmp.Or(cmp.Compare(strings.ToLower(x.Key.Subscription), strings.ToLower(y.Key.Subscription)),
			cmp.Compare(strings.ToLower(x.Key.Group), strings.ToLower(y.Key.Group)),
			cmp.Compare(x.Key.Location, y.Key.Location),
			cmp.Compare(strings.ToLower(x.Key.Name), strings.ToLower(y.Key.Name)))
	})
	return out, err
}

// azureRequests returns the newest limit requests that opened grants on
// members since each got its policy, with those grants only: a policy's
// history is its own, not that of its VMs under an earlier policy.
func (c *Control) azureRequests(tx store.Tx, members []AzureMember, limit int) ([]jit.Request, error) {
	byID := map[string]*jit.Request{}
	for _, m := range members {
		gs, err := tx.ListGrants(store.GrantFilter{VMID: m.VM.ID, Limit: limit * 8, Since: m.Policy.CreatedAt})
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			r := byID[g.RequestID]
			if r == nil {
				r = &jit.Request{ID: g.RequestID, User: g.User, CreatedAt: g.StartTime}
				byID[g.RequestID] = r
			}
			if g.StartTime.Before(r.CreatedAt) {
				r.CreatedAt = g.StartTime
			}
			r.Grants = append(r.Grants, g)
		}
	}
	reqs := make([]jit.Request, 0, len(byID))
	for _, r := range byID {
		slices.SortFunc(r.Grants, func(x, y jit.Grant) int {
			return cmp.Or(cmp.Compare(x.VMName, y.VMName), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Source, y.Source))
		})
		reqs = append(reqs, *r)
	}
	slices.SortFunc(reqs, func(x, y jit.Request) int {
		return cmp.Or(y.CreatedAt.Compare(x.CreatedAt), cmp.Compare(x.ID, y.ID))
	})
	if len(reqs) > limit {
		reqs = reqs[:limit]
	}
	// Justifications and source addresses come from the requests
	// themselves, read per requester.
	users := map[string]time.Time{}
	for _, r := range reqs {
		if t, ok := users[r.User]; !ok || r.CreatedAt.Before(t) {
			users[r.User] = r.CreatedAt
		}
	}
	want := map[string]int{}
	for i, r := range reqs {
		want[r.ID] = i
	}
	for u := range users {
		rs, err := tx.ListRequests(store.RequestFilter{User: u, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if i, ok := want[r.ID]; ok {
				reqs[i].Justification, reqs[i].Address, reqs[i].CreatedAt = r.Justification, r.Address, r.CreatedAt
			}
		}
	}
	return reqs, nil
}
