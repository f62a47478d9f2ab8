package control

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidName checks a group, VM or user name.
func ValidName(target, s string) error {
	if !nameRE.MatchString(s) {
		return jit.Invalid(target, "%q is not a valid name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return nil
}

// CreateGroup creates a group (admins only).
func (c *Control) CreateGroup(ctx context.Context, a *Actor, name string) (jit.Group, error) {
	g := jit.Group{Name: name, CreatedAt: c.Now()}
	if err := ValidName("name", name); err != nil {
		return g, err
	}
	if err := a.require(jit.PermAdmin, "", "create groups"); err != nil {
		return g, err
	}
	return g, c.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateGroup(g); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpGroupCreate, jit.OutcomeSuccess, nil, map[string]string{"group": name}))
	})
}

// ListGroups lists the groups the actor may read.
func (c *Control) ListGroups(ctx context.Context, a *Actor) ([]jit.Group, error) {
	readable := a.readGroups()
	var out []jit.Group
	err := c.store.View(ctx, func(tx store.Tx) error {
		all, err := tx.ListGroups()
		for _, g := range all {
			if readable == nil || contains(readable, g.Name) {
				out = append(out, g)
			}
		}
		return err
	})
	return out, err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func validateVM(n *jit.NewVM) error {
	if err := ValidName("name", n.Name); err != nil {
		return err
	}
	if n.Group == "" {
		return jit.Invalid("group", "group is required")
	}
	switch n.Backend {
	case jit.BackendAgent, jit.BackendAzure:
	case "":
		n.Backend = jit.BackendAgent
	default:
		return jit.Invalid("backend", "backend must be agent or azure, got %q", n.Backend)
	}
	switch n.OS {
	case "linux", "windows":
	case "":
		n.OS = "linux"
	default:
		return jit.Invalid("os", "os must be linux or windows, got %q", n.OS)
	}
	if len(n.Addresses) > 32 {
		return jit.Invalid("addresses", "at most 32 addresses, got %d", len(n.Addresses))
	}
	for i, s := range n.Addresses {
		p, err := jit.ParsePrefix(s)
		if err != nil || p.Bits() != p.Addr().BitLen() {
			return jit.Invalid(fmt.Sprintf("addresses[%d]", i), "%q is not an IP address", s)
		}
		n.Addresses[i] = p.Addr().String()
	}
	if len(n.Labels) > 64 {
		return jit.Invalid("labels", "at most 64 labels, got %d", len(n.Labels))
	}
	for k, v := range n.Labels {
		if k == "" || len(k) > 128 || len(v) > 512 {
			return jit.Invalid("labels", "label %q: keys must be 1 to 128 bytes and values at most 512", k)
		}
	}
	return nil
}

// CreateVM registers a VM in a group.
func (c *Control) CreateVM(ctx context.Context, a *Actor, n jit.NewVM) (jit.VM, error) {
	if err := validateVM(&n); err != nil {
		return jit.VM{}, err
	}
	if err := a.require(jit.PermManageVMs, n.Group, "register VMs"); err != nil {
		return jit.VM{}, err
	}
	// A cloud VM's external id names the cloud resource whose firewall
	// ajar edits: only admins may claim one by hand (discovery registers
	// cloud VMs as the system).
	if (n.Backend != jit.BackendAgent || n.ExternalID != "") && !a.Can(jit.PermAdmin, "") {
		return jit.VM{}, &jit.Error{Code: jit.EForbidden, Message: a.Name() + " may not register cloud VMs or external ids (admins only; Azure VMs come from discovery)", Target: "backend"}
	}
	vm := jit.VM{ID: NewID(), Name: n.Name, Group: n.Group, Backend: n.Backend, OS: n.OS, Addresses: n.Addresses,
		Labels: n.Labels, ExternalID: n.ExternalID, CreatedAt: c.Now()}
	err := c.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetGroup(n.Group); err != nil {
			return targeted(err, "group")
		}
		if err := tx.CreateVM(&vm); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpVMCreate, jit.OutcomeSuccess, &vm, map[string]any{"name": vm.Name, "backend": vm.Backend}))
	})
	return vm, err
}

// targeted sets the target of a *jit.Error.
func targeted(err error, target string) error {
	if e, ok := err.(*jit.Error); ok && e.Target == "" {
		return &jit.Error{Code: e.Code, Message: e.Message, Target: target}
	}
	return err
}

// getVM reads a VM the actor may read; VMs of other groups are reported
// as not found so that their existence does not leak.
func getVM(tx store.Tx, a *Actor, id string) (jit.VM, error) {
	vm, err := tx.GetVM(id)
	if err != nil {
		return vm, err
	}
	if !a.Can(jit.PermRead, vm.Group) {
		return jit.VM{}, jit.Errorf(jit.ENotFound, "VM %s not found", id)
	}
	return vm, nil
}

// GetVM returns one VM with its classification, policy and usage.
func (c *Control) GetVM(ctx context.Context, a *Actor, id string) (jit.VMView, error) {
	var v jit.VMView
	err := c.store.View(ctx, func(tx store.Tx) error {
		vm, err := getVM(tx, a, id)
		if err != nil {
			return err
		}
		views, err := c.views(tx, []jit.VM{vm})
		if err == nil {
			v = views[0]
		}
		return err
	})
	return v, err
}

// VMListFilter selects VMs for ListVMs.
type VMListFilter struct {
	Group string
	JIT   string // configured, not-configured, unsupported
	Name  string
}

// ListVMs lists the VMs the actor may read.
func (c *Control) ListVMs(ctx context.Context, a *Actor, f VMListFilter) ([]jit.VMView, error) {
	switch f.JIT {
	case "", jit.JITConfigured, jit.JITNotConfigured, jit.JITUnsupported:
	default:
		return nil, jit.Invalid("jit", "jit must be configured, not-configured or unsupported, got %q", f.JIT)
	}
	var out []jit.VMView
	err := c.store.View(ctx, func(tx store.Tx) error {
		vms, err := tx.ListVMs(store.VMFilter{Group: f.Group, Name: f.Name, Groups: a.readGroups()})
		if err != nil {
			return err
		}
		views, err := c.views(tx, vms)
		for _, v := range views {
			if f.JIT == "" || v.Classification.JIT == f.JIT {
				out = append(out, v)
			}
		}
		return err
	})
	return out, err
}

// views adds classification, policy and usage to vms.
func (c *Control) views(tx store.Tx, vms []jit.VM) ([]jit.VMView, error) {
	if len(vms) == 0 {
		return nil, nil
	}
	now := c.Now()
	groups := map[string]bool{}
	for _, vm := range vms {
		groups[vm.Group] = true
	}
	var gl []string
	for g := range groups {
		gl = append(gl, g)
	}
	f := store.VMFilter{Groups: gl}
	if len(vms) == 1 {
		f = store.VMFilter{Group: vms[0].Group, Name: vms[0].Name}
	}
	pols, err := tx.ListPolicies(f)
	if err != nil {
		return nil, err
	}
	byVM := map[string]*jit.Policy{}
	for i := range pols {
		byVM[pols[i].VMID] = &pols[i]
	}
	gf := store.GrantFilter{Since: now.Add(-7 * 24 * time.Hour), Groups: gl}
	if len(vms) == 1 {
		gf = store.GrantFilter{Since: now.Add(-7 * 24 * time.Hour), VMID: vms[0].ID}
	}
	recent, err := tx.ListGrants(gf)
	if err != nil {
		return nil, err
	}
	out := make([]jit.VMView, len(vms))
	idx := map[string]int{}
	for i, vm := range vms {
		pol := byVM[vm.ID]
		out[i] = jit.VMView{VM: vm, Classification: jit.Classify(vm, pol != nil, now), Policy: pol}
		if pol == nil {
			out[i].Recommended = jit.Recommend(vm)
		}
		if vm.Report != nil && !vm.Report.Enforceable && pol != nil {
			out[i].EnforcementError = vm.Report.Reason
		}
		out[i].ShadowedRules = ShadowedRules(vm)
		idx[vm.ID] = i
	}
	requests := map[string]map[string]bool{}
	for _, g := range recent { // newest first
		i, ok := idx[g.VMID]
		if !ok {
			continue
		}
		v := &out[i]
		if g.Status == jit.GrantActive && g.EndTime.After(now) {
			v.ActiveGrants++
		}
		if requests[g.VMID] == nil {
			requests[g.VMID] = map[string]bool{}
		}
		requests[g.VMID][g.RequestID] = true
		if v.LastAccess == nil {
			st := g.StartTime
			v.LastAccess, v.LastUser = &st, g.User
		}
	}
	for id, reqs := range requests {
		out[idx[id]].ApprovedLast7d = len(reqs)
	}
	return out, nil
}

// DeleteVM removes a VM, ending its active grants and its policy.
func (c *Control) DeleteVM(ctx context.Context, a *Actor, id string) error {
	return c.store.Update(ctx, func(tx store.Tx) error {
		vm, err := getVM(tx, a, id)
		if err != nil {
			return err
		}
		if err := a.require(jit.PermManageVMs, vm.Group, "delete VMs"); err != nil {
			return err
		}
		if err := c.endAll(tx, a, vm, "VM deleted", nil); err != nil {
			return err
		}
		if err := tx.DeleteVM(id); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpVMDelete, jit.OutcomeSuccess, &vm, map[string]string{"name": vm.Name}))
	})
}

// Recommend returns the recommended port rules and health of a VM.
func (c *Control) Recommend(ctx context.Context, a *Actor, id string) (jit.Recommendation, error) {
	var r jit.Recommendation
	err := c.store.View(ctx, func(tx store.Tx) error {
		vm, err := getVM(tx, a, id)
		if err != nil {
			return err
		}
		_, perr := tx.GetPolicy(id)
		if perr != nil && jit.ErrorCode(perr) != jit.ENotFound {
			return perr
		}
		r = jit.Recommendation{Ports: jit.Recommend(vm), Classification: jit.Classify(vm, perr == nil, c.Now()), Exposed: jit.ExposedManagementPorts(vm)}
		if r.Exposed == nil {
			r.Exposed = []jit.Socket{}
		}
		return nil
	})
	return r, err
}
