package gcpfw

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/ajarhq/ajar/internal/enforce"
	"github.com/ajarhq/ajar/internal/jit"
)

// Enforcer makes desired states true in the VPC firewall rules of Compute
// Engine instances (backend "gcp"). It is safe for concurrent use; the
// changes for one instance are serialized within the process.
type Enforcer struct {
	c   *Client
	log *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex // by vmKey
}

var _ enforce.Enforcer = (*Enforcer)(nil)

// NewEnforcer returns an Enforcer that works through c.
func NewEnforcer(c *Client, logger *slog.Logger) *Enforcer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{c: c, log: logger, locks: map[string]*sync.Mutex{}}
}

// tagRetries is how often Apply re-reads an instance whose tags changed
// between its read and ajar's setTags (412 conditionNotMet).
const tagRetries = 5

// Apply makes the firewall rules of the instance's networks hold exactly
// ajar's rules for state, and the instance carry ajar's tag while it is
// locked. A state with an empty Lock removes everything of ajar's.
func (e *Enforcer) Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error {
	r, err := e.target(vm)
	if err != nil {
		return err
	}
	if len(state.Lock) == 0 {
		return e.Remove(ctx, vm)
	}
	unlock := e.lock(r)
	defer unlock()
	in, err := e.c.getInstance(ctx, r)
	if err != nil {
		return err
	}
	networks := networksOf(in)
	if len(networks) == 0 {
		return jit.Errorf(jit.EConflict, "%s", ReasonNoNIC)
	}
	tag := Tag(r)
	if !slices.Contains(in.GetTags().GetItems(), tag) && len(in.GetTags().GetItems()) >= 64 {
		return jit.Errorf(jit.EConflict, "instance %s has 64 network tags, the most Google Cloud allows; ajar needs one for its lock", r.name)
	}
	for _, p := range projectsOf(networks, vm) {
		rules, err := e.listOwn(ctx, p, networks)
		if err != nil {
			return err
		}
		var here []networkRef
		for _, n := range networks {
			if n.project == p {
				here = append(here, n)
			}
		}
		plan, err := planRules(r, in, here, rules, state)
		if err != nil {
			return err
		}
		if err := e.execute(ctx, p, plan); err != nil {
			return err
		}
	}
	return e.setTag(ctx, r, in, true)
}

// Remove deletes ajar's rules for vm from the projects of its networks
// (as the instance has them, or as discovery recorded them when it is
// gone) and takes ajar's tag off the instance, and changes nothing else.
func (e *Enforcer) Remove(ctx context.Context, vm jit.VM) error {
	r, err := e.target(vm)
	if err != nil {
		return err
	}
	unlock := e.lock(r)
	defer unlock()
	in, err := e.c.getInstance(ctx, r)
	if err != nil && jit.ErrorCode(err) != jit.ENotFound {
		return err
	}
	networks := labelNetworks(vm)
	if in != nil {
		networks = networksOf(in)
	}
	for _, p := range projectsOf(networks, vm) {
		rules, err := e.listOwn(ctx, p, networks)
		if err != nil {
			return err
		}
		var plan rulePlan
		for _, fw := range rules {
			if strings.HasPrefix(fw.GetName(), rulePrefix(r)) {
				plan.del = append(plan.del, fw.GetName())
			}
		}
		if err := e.execute(ctx, p, plan); err != nil {
			return err
		}
	}
	if in == nil {
		return nil
	}
	return e.setTag(ctx, r, in, false)
}

// Shadowed lists the rules, by name, of someone else that ajar's lock on
// vm overrides: enabled ingress allow rules that apply to the instance,
// cover some locked port, and come after ajar's deny.
func (e *Enforcer) Shadowed(ctx context.Context, vm jit.VM) ([]string, error) {
	r, err := e.target(vm)
	if err != nil {
		return nil, err
	}
	in, err := e.c.getInstance(ctx, r)
	if err != nil {
		return nil, err
	}
	networks := networksOf(in)
	var out []string
	for _, p := range projectsOf(networks, jit.VM{}) {
		rules, err := e.c.listFirewalls(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, n := range networks {
			if n.project != p {
				continue
			}
			t := targetOf(in, n, Tag(r))
			var denies []*computepb.Firewall
			for _, fw := range rules {
				if strings.HasPrefix(fw.GetName(), rulePrefix(r)) && len(fw.Denied) > 0 && appliesTo(fw, t) {
					denies = append(denies, fw)
				}
			}
			for _, fw := range rules {
				if strings.HasPrefix(fw.GetName(), "ajar-") || len(fw.Allowed) == 0 || !appliesTo(fw, t) {
					continue
				}
				for _, d := range denies {
					if fw.GetPriority() >= d.GetPriority() && overlaps(fw, entries(d)) {
						out = append(out, fw.GetName())
						break
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// target checks that vm is a Compute Engine instance and parses its id.
func (e *Enforcer) target(vm jit.VM) (instanceRef, error) {
	if vm.Backend != jit.BackendGCP {
		return instanceRef{}, jit.Invalid("backend", "VM %s has backend %q, not %q", vm.Name, vm.Backend, jit.BackendGCP)
	}
	return parseRef(vm.ExternalID)
}

// projectsOf returns the projects whose firewall rules may hold ajar's
// rules for vm: those of networks, of the networks discovery recorded,
// and the instance's own (only those of networks for a zero vm).
func projectsOf(networks []networkRef, vm jit.VM) []string {
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, n := range networks {
		add(n.project)
	}
	for _, n := range labelNetworks(vm) {
		add(n.project)
	}
	if r, err := parseRef(vm.ExternalID); err == nil {
		add(r.project)
	}
	return out
}

// labelNetworks returns the networks discovery recorded on vm.
func labelNetworks(vm jit.VM) []networkRef {
	var out []networkRef
	for _, s := range strings.Split(vm.Labels[LabelNetworks], ",") {
		if n, ok := parseNetwork(strings.TrimSpace(s)); ok {
			out = append(out, n)
		}
	}
	return out
}

// listOwn lists the firewall rules of project. Where none of networks
// lives in project (ajar only looks there for rules left behind: the
// instance's own project in a Shared VPC, a network the instance left),
// a refusal or a missing project means nothing is left to clean.
func (e *Enforcer) listOwn(ctx context.Context, project string, networks []networkRef) ([]*computepb.Firewall, error) {
	rules, err := e.c.listFirewalls(ctx, project)
	if err == nil || slices.ContainsFunc(networks, func(n networkRef) bool { return n.project == project }) {
		return rules, err
	}
	if code := jit.ErrorCode(err); code == jit.EForbidden || code == jit.ENotFound {
		e.log.Debug("google cloud: firewall rules not readable where the instance has no network", "project", project, "err", err)
		return nil, nil
	}
	return nil, err
}

// rulePlan is what Apply changes in one project, in this order: delete
// stale grants (closing first), write the locks, write the grants, delete
// stale locks (opening last).
type rulePlan struct {
	del     []string // stale allow rules
	put     []putRule
	delLast []string // stale deny rules
	bypass  []string // rules of others ahead of the lock that still let their sources in
}

type putRule struct {
	spec   spec
	exists bool
}

func (p rulePlan) empty() bool { return len(p.del) == 0 && len(p.put) == 0 && len(p.delLast) == 0 }

// planRules plans the changes that make rules (those of one project) hold
// exactly the instance's lock and grants in networks.
func planRules(r instanceRef, in *computepb.Instance, networks []networkRef, rules []*computepb.Firewall, state jit.DesiredState) (rulePlan, error) {
	var plan rulePlan
	lock := lockEntries(state.Lock)
	tag := Tag(r)
	owned := map[string]*computepb.Firewall{}
	for _, fw := range rules {
		if strings.HasPrefix(fw.GetName(), rulePrefix(r)) {
			owned[fw.GetName()] = fw
		}
	}
	var want []spec
	for _, n := range networks {
		t := targetOf(in, n, tag)
		// The lock comes no later than the first rule of someone else that
		// opens some locked port to the whole internet.
		denyAt := int32(DefaultDenyPriority)
		var overlapping []*computepb.Firewall
		for _, fw := range rules {
			if strings.HasPrefix(fw.GetName(), "ajar-") || len(fw.Allowed) == 0 || !appliesTo(fw, t) || !overlaps(fw, lock) {
				continue
			}
			overlapping = append(overlapping, fw)
			if fromAnywhere(fw) {
				denyAt = min(denyAt, fw.GetPriority())
			}
		}
		if len(state.Grants) > 0 && denyAt == 0 {
			return rulePlan{}, jit.Errorf(jit.EConflict,
				"a firewall rule of network %s at priority 0 opens the locked ports of instance %s to the internet: ajar's grants cannot come ahead of its lock", n.name, r.name)
		}
		for _, fw := range overlapping {
			if fw.GetPriority() < denyAt {
				plan.bypass = append(plan.bypass, fw.GetName())
			}
		}
		for _, fam := range []struct{ suffix, any string }{{"4", "0.0.0.0/0"}, {"6", "::/0"}} {
			want = append(want, spec{name: denyName(r, n, fam.suffix), network: n, priority: denyAt, sources: []string{fam.any},
				entries: lock, tag: tag, description: describeLock(r)})
		}
		for _, g := range state.Grants {
			src, err := netip.ParsePrefix(g.Source)
			if err != nil {
				a, aerr := netip.ParseAddr(g.Source)
				if aerr != nil {
					return rulePlan{}, jit.Invalid("source", "grant %s: source %q is not an address or CIDR prefix", g.ID, g.Source)
				}
				src = netip.PrefixFrom(a, a.BitLen())
			}
			ge := lockEntries([]jit.PortLock{{Port: g.Port, Protocol: g.Protocol}})
			want = append(want, spec{name: allowName(r, n, g.ID), network: n, priority: denyAt - 1, allow: true,
				sources: []string{src.Masked().String()}, entries: ge, tag: tag, description: describeGrant(r, g)})
		}
	}
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.name] = true
	}
	for name, fw := range owned {
		if wanted[name] {
			continue
		}
		if len(fw.Allowed) > 0 {
			plan.del = append(plan.del, name)
		} else {
			plan.delLast = append(plan.delLast, name)
		}
	}
	slices.Sort(plan.del)
	slices.Sort(plan.delLast)
	// Locks before grants: a grant never opens ahead of its lock's change.
	slices.SortStableFunc(want, func(a, b spec) int {
		switch {
		case !a.allow && b.allow:
			return -1
		case a.allow && !b.allow:
			return 1
		}
		return 0
	})
	for _, s := range want {
		cur := owned[s.name]
		if cur != nil && s.sameAs(cur) {
			continue
		}
		plan.put = append(plan.put, putRule{spec: s, exists: cur != nil})
	}
	return plan, nil
}

// execute carries out plan in project, in the plan's order.
func (e *Enforcer) execute(ctx context.Context, project string, plan rulePlan) error {
	if len(plan.bypass) > 0 && !plan.empty() {
		e.log.Warn("google cloud rules ahead of the jit lock still let their sources in", "project", project, "rules", plan.bypass)
	}
	for _, name := range plan.del {
		if err := e.deleteRule(ctx, project, name); err != nil {
			return err
		}
	}
	for _, p := range plan.put {
		if err := e.putRule(ctx, project, p); err != nil {
			return err
		}
	}
	for _, name := range plan.delLast {
		if err := e.deleteRule(ctx, project, name); err != nil {
			return err
		}
	}
	return nil
}

func (e *Enforcer) deleteRule(ctx context.Context, project, name string) error {
	what := fmt.Sprintf("firewall rule %s of project %s", name, project)
	err := e.c.retry(ctx, "delete firewall", func() error {
		op, err := e.c.firewalls.Delete(ctx, &computepb.DeleteFirewallRequest{Project: project, Firewall: name})
		if err == nil {
			err = e.c.wait(ctx, op, "delete "+what)
		}
		return err
	})
	if err != nil && status(err) != http.StatusNotFound {
		return callError(err, "delete", what)
	}
	e.log.Info("google cloud firewall rule deleted", "project", project, "rule", name)
	return nil
}

func (e *Enforcer) putRule(ctx context.Context, project string, p putRule) error {
	what := fmt.Sprintf("firewall rule %s of project %s", p.spec.name, project)
	exists := p.exists
	err := e.c.retry(ctx, "write firewall", func() error {
		if !exists {
			op, err := e.c.firewalls.Insert(ctx, &computepb.InsertFirewallRequest{Project: project, FirewallResource: p.spec.firewall()})
			if err == nil {
				return e.c.wait(ctx, op, "create "+what)
			}
			if status(err) != http.StatusConflict {
				return err
			}
			exists = true // an earlier attempt made it: make it right
		}
		op, err := e.c.firewalls.Patch(ctx, &computepb.PatchFirewallRequest{Project: project, Firewall: p.spec.name, FirewallResource: p.spec.firewall()})
		if err == nil {
			err = e.c.wait(ctx, op, "change "+what)
		}
		if status(err) == http.StatusNotFound {
			exists = false // deleted meanwhile: the next attempt creates it
			return &retryNow{err}
		}
		return err
	})
	if err != nil {
		verb := "create"
		if exists {
			verb = "change"
		}
		return callError(err, verb, what)
	}
	kind := "deny"
	if p.spec.allow {
		kind = "allow"
	}
	e.log.Info("google cloud firewall rule written", "project", project, "rule", p.spec.name, "priority", p.spec.priority, "kind", kind)
	return nil
}

// retryNow is an error the retry loop tries again at once after.
type retryNow struct{ err error }

func (e *retryNow) Error() string { return e.err.Error() }
func (e *retryNow) Unwrap() error { return e.err }

// setTag puts ajar's tag on the instance (on) or takes it off, with the
// tags' fingerprint, reading the instance again when its tags changed
// meanwhile.
func (e *Enforcer) setTag(ctx context.Context, r instanceRef, in *computepb.Instance, on bool) error {
	tag := Tag(r)
	for attempt := 1; ; attempt++ {
		items := in.GetTags().GetItems()
		has := slices.Contains(items, tag)
		if has == on {
			return nil
		}
		var next []string
		if on {
			next = append(slices.Clone(items), tag)
		} else {
			next = slices.DeleteFunc(slices.Clone(items), func(s string) bool { return s == tag })
		}
		err := e.c.retry(ctx, "set tags", func() error {
			op, err := e.c.instances.SetTags(ctx, &computepb.SetTagsInstanceRequest{Project: r.project, Zone: r.zone, Instance: r.name,
				TagsResource: &computepb.Tags{Items: next, Fingerprint: in.GetTags().Fingerprint}})
			if err == nil {
				err = e.c.wait(ctx, op, "set the tags of instance "+r.String())
			}
			return err
		})
		if err == nil {
			e.log.Info("google cloud instance tag set", "instance", r.String(), "tag", tag, "on", on)
			return nil
		}
		if status(err) != http.StatusPreconditionFailed || attempt >= tagRetries {
			return callError(err, "set the network tags of", "instance "+r.String())
		}
		e.log.Warn("google cloud instance tags changed meanwhile, reading them again", "instance", r.String())
		if in, err = e.c.getInstance(ctx, r); err != nil {
			return err
		}
	}
}

// lock serializes the changes for one instance.
func (e *Enforcer) lock(r instanceRef) (unlock func()) {
	key := vmKey(r)
	e.mu.Lock()
	m, ok := e.locks[key]
	if !ok {
		m = &sync.Mutex{}
		e.locks[key] = m
	}
	e.mu.Unlock()
	m.Lock()
	return m.Unlock
}
