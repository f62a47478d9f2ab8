package control

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
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
		if old, ok, err := groupFold(tx, name); err != nil {
			return err
		} else if ok {
			return &jit.Error{Code: jit.EConflict, Target: "name",
				Message: fmt.Sprintf("group %s already exists (group names ignore case, as Azure resource groups do)", old.Name)}
		}
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
	switch {
	case n.Backend == "":
		n.Backend = jit.BackendAgent
	case !slices.Contains(jit.Backends, n.Backend):
		return jit.Invalid("backend", "backend must be one of %s, got %q", strings.Join(jit.Backends, ", "), n.Backend)
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
	// Search keeps the VMs whose name, group, OS, backend, addresses or
	// labels contain it (case-insensitive).
	Search string
	// Limit is the page size: 0 for DefaultPage, at most MaxVMPage; -1
	// lists every VM, for the server's own callers.
	Limit int
	// Cursor is the Next of the page before; "" starts at the first VM.
	Cursor string
	// Reverse lists in reverse (group, name) order.
	Reverse bool
}

// ListVMs lists one page of the VMs the actor may read, in (group, name)
// order, and the cursor of the next page ("" after the last).
func (c *Control) ListVMs(ctx context.Context, a *Actor, f VMListFilter) ([]jit.VMView, string, error) {
	switch f.JIT {
	case "", jit.JITConfigured, jit.JITNotConfigured, jit.JITUnsupported:
	default:
		return nil, "", jit.Invalid("jit", "jit must be configured, not-configured or unsupported, got %q", f.JIT)
	}
	limit := f.Limit
	if limit != -1 {
		var err error
		if limit, err = pageLimit(f.Limit, DefaultPage, MaxVMPage); err != nil {
			return nil, "", err
		}
	}
	sf := store.VMFilter{Group: f.Group, Name: f.Name, Groups: a.readGroups()}
	// A cursor holds the direction it reads in: against the order asked
	// for, it reads back (a "previous" page).
	sf.Desc = f.Reverse
	if err := decodeCursor(f.Cursor, "vms", &sf.AfterGroup, &sf.AfterName, &sf.Desc); err != nil {
		return nil, "", err
	}
	// Whether a VM has a policy is the one part of its tab the database
	// can tell; the rest (reports, time) is classified here, chunk by
	// chunk, so memory follows the page size and not the fleet's.
	switch f.JIT {
	case jit.JITConfigured:
		sf.Policy = store.WithPolicy
	case jit.JITNotConfigured, jit.JITUnsupported:
		sf.Policy = store.WithoutPolicy
	}
	needle := strings.ToLower(strings.TrimSpace(f.Search))
	sf.Limit = max(limit+1, 100)
	if needle != "" {
		// A search reads on until the page is full, most VMs failing the
		// match: fewer, larger chunks.
		sf.Limit = max(limit+1, 1000)
	}
	if limit == -1 {
		sf.Limit = 0
	}
	var out []jit.VMView
	next := ""
	err := c.store.View(ctx, func(tx store.Tx) error {
		for {
			vms, err := tx.ListVMs(sf)
			if err != nil {
				return err
			}
			if sf.Limit == 0 || len(vms) < sf.Limit {
				sf.Limit = -1 // the last chunk
			} else {
				last := vms[len(vms)-1]
				sf.AfterGroup, sf.AfterName = last.Group, last.Name
			}
			if needle != "" {
				vms = slices.DeleteFunc(vms, func(vm jit.VM) bool { return !vmMatches(vm, needle) })
			}
			views, err := c.views(tx, vms)
			if err != nil {
				return err
			}
			for _, v := range views {
				if f.JIT != "" && v.Classification.JIT != f.JIT {
					continue
				}
				if limit != -1 && len(out) == limit {
					last := out[len(out)-1]
					next = VMCursor(last.Group, last.Name, sf.Desc)
					return nil
				}
				out = append(out, v)
			}
			if sf.Limit == -1 {
				return nil
			}
		}
	})
	if sf.Desc != f.Reverse {
		slices.Reverse(out)
	}
	return out, next, err
}

// VMCursor is the cursor of the VMs after (group, name) in (group, name)
// order, or with desc before it in reverse order: the page a "previous"
// link shows reads against the page's order and ends there.
func VMCursor(group, name string, desc bool) string {
	return encodeCursor("vms", group, name, desc)
}

// VMNames returns the names of the VMs with the given ids that the actor
// may read.
func (c *Control) VMNames(ctx context.Context, a *Actor, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	err := c.store.View(ctx, func(tx store.Tx) error {
		vms, err := tx.ListVMs(store.VMFilter{IDs: ids, Groups: a.readGroups()})
		for _, vm := range vms {
			out[vm.ID] = vm.Name
		}
		return err
	})
	return out, err
}

// vmMatches reports whether a VM's name, group, OS, backend, addresses or
// labels contain needle (lower case).
func vmMatches(vm jit.VM, needle string) bool {
	hay := []string{vm.Name, vm.Group, vm.OS, vm.Backend}
	hay = append(hay, vm.Addresses...)
	for k, val := range vm.Labels {
		hay = append(hay, k+"="+val)
	}
	for _, h := range hay {
		if strings.Contains(strings.ToLower(h), needle) {
			return true
		}
	}
	return false
}

// views adds classification, policy and usage to vms (a page of them).
func (c *Control) views(tx store.Tx, vms []jit.VM) ([]jit.VMView, error) {
	if len(vms) == 0 {
		return nil, nil
	}
	now := c.Now()
	ids := make([]string, len(vms))
	for i, vm := range vms {
		ids[i] = vm.ID
	}
	pols, err := tx.ListPolicies(store.VMFilter{IDs: ids})
	if err != nil {
		return nil, err
	}
	byVM := map[string]*jit.Policy{}
	for i := range pols {
		byVM[pols[i].VMID] = &pols[i]
	}
	usage, err := tx.VMUsage(ids, now.Add(-7*24*time.Hour), now)
	if err != nil {
		return nil, err
	}
	out := make([]jit.VMView, len(vms))
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
		u := usage[vm.ID]
		out[i].ApprovedLast7d, out[i].LastAccess, out[i].LastUser, out[i].ActiveGrants = u.Approved, u.LastAccess, u.LastUser, u.ActiveGrants
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
