package azurensg

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/enforce"
	"github.com/ajarhq/ajar/internal/jit"
)

// Enforcer makes desired states true in the NSGs of Azure VMs (backend
// "azure"). It is safe for concurrent use; changes to one NSG are
// serialized within the process.
type Enforcer struct {
	c    *Client
	log  *slog.Logger
	poll time.Duration

	mu    sync.Mutex
	locks map[string]*sync.Mutex // by lower-cased NSG id
}

var _ enforce.Enforcer = (*Enforcer)(nil)

// NewEnforcer returns an Enforcer that works through c.
func NewEnforcer(c *Client, logger *slog.Logger) *Enforcer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{c: c, log: logger, poll: 2 * time.Second, locks: map[string]*sync.Mutex{}}
}

// conflictRetries is how often Apply re-reads an NSG and plans again when
// Azure refuses a priority someone else took meanwhile.
const conflictRetries = 3

// Apply makes the NSGs in front of vm hold exactly ajar's rules for state.
// A VM without an NSG, or whose NSG has no free priority for ajar's rules,
// gets a jit.EConflict error that says so.
func (e *Enforcer) Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error {
	vmr, err := e.target(vm)
	if err != nil {
		return err
	}
	az, err := e.c.getVM(ctx, vm.ExternalID)
	if err != nil {
		return err
	}
	path, err := e.c.path(ctx, az)
	if err != nil {
		return err
	}
	if len(path.nsgs) == 0 && len(state.Lock) > 0 {
		return jit.Errorf(jit.EConflict, "%s", ReasonNoNSG)
	}
	denies, allows, skipped, err := desired(vmr, path.ip, state)
	if err != nil {
		return err
	}
	if len(skipped) > 0 {
		e.log.Warn("azure nsg cannot hold grants of another address family than the VM's", "vm", vmr.name, "ip", path.ip, "grants", skipped)
	}
	for _, id := range path.nsgs {
		if err := e.applyNSG(ctx, id, vmr, path.ip, denies, allows); err != nil {
			return err
		}
	}
	return e.cleanStale(ctx, vm, vmr, path.nsgs)
}

// Remove deletes ajar's rules for vm from the NSGs in front of it and from
// those its labels name, and nothing else. A VM gone from Azure is cleaned
// through its labels.
func (e *Enforcer) Remove(ctx context.Context, vm jit.VM) error {
	vmr, err := e.target(vm)
	if err != nil {
		return err
	}
	var nsgs []string
	az, err := e.c.getVM(ctx, vm.ExternalID)
	switch {
	case jit.ErrorCode(err) == jit.ENotFound:
	case err != nil:
		return err
	default:
		path, err := e.c.path(ctx, az)
		if jit.ErrorCode(err) == jit.ENotFound {
			break // its NIC or subnet is gone: the labels are all there is
		}
		if err != nil {
			return err
		}
		nsgs = path.nsgs
		for _, id := range nsgs {
			if err := e.applyNSG(ctx, id, vmr, netip.Addr{}, nil, nil); err != nil {
				return err
			}
		}
	}
	return e.cleanStale(ctx, vm, vmr, nsgs)
}

// Shadowed lists the rules, as "nsg/rule", that ajar's lock on vm
// currently overrides: other inbound Allow rules behind its Deny rule that
// cover some of the locked ports for the VM's address.
func (e *Enforcer) Shadowed(ctx context.Context, vm jit.VM) ([]string, error) {
	vmr, err := e.target(vm)
	if err != nil {
		return nil, err
	}
	az, err := e.c.getVM(ctx, vm.ExternalID)
	if err != nil {
		return nil, err
	}
	path, err := e.c.path(ctx, az)
	if err != nil {
		return nil, err
	}
	tag := vmTag(vmr.id)
	var out []string
	for _, id := range path.nsgs {
		nsg, err := e.c.getNSG(ctx, id)
		if err != nil {
			return nil, err
		}
		rules := securityRules(nsg)
		var denies []*armnetwork.SecurityRule
		for _, r := range rules {
			if ownedBy(deref(r.Name), tag) && strings.HasPrefix(*r.Name, prefixDeny) && isInbound(r.Properties) {
				denies = append(denies, r)
			}
		}
		for _, r := range sortedInbound(rules) {
			p := r.Properties
			if ownedBy(deref(r.Name), tag) || deref(p.Access) != armnetwork.SecurityRuleAccessAllow {
				continue
			}
			for _, d := range denies {
				dp := d.Properties
				ranges, _ := rulePorts(dp)
				var ports []int
				for _, pr := range ranges {
					ports = append(ports, pr.lo) // ajar's deny rules list single ports
				}
				if deref(dp.Priority) < deref(p.Priority) && overlaps(p, deref(dp.Protocol), ports, path.ip) {
					out = append(out, deref(nsg.Name)+"/"+deref(r.Name))
					break
				}
			}
		}
	}
	return out, nil
}

// target checks that vm is an Azure VM and parses its ARM id.
func (e *Enforcer) target(vm jit.VM) (resource, error) {
	if vm.Backend != jit.BackendAzure {
		return resource{}, jit.Invalid("backend", "VM %s has backend %q, not %q", vm.Name, vm.Backend, jit.BackendAzure)
	}
	return parseID(vm.ExternalID, typeVM)
}

// cleanStale removes vm's rules from the NSGs its labels name that are not
// in current (the NSGs still in front of it); NSGs that are gone are skipped.
func (e *Enforcer) cleanStale(ctx context.Context, vm jit.VM, vmr resource, current []string) error {
	for _, id := range labelNSGs(vm) {
		if containsFold(current, id) {
			continue
		}
		err := e.applyNSG(ctx, id, vmr, netip.Addr{}, nil, nil)
		if err != nil && jit.ErrorCode(err) != jit.ENotFound {
			return err
		}
	}
	return nil
}

// applyNSG makes the NSG with id hold exactly denies and allows of vm.
func (e *Enforcer) applyNSG(ctx context.Context, id string, vmr resource, ip netip.Addr, denies, allows []ruleSpec) error {
	nr, err := parseID(id, typeNSG)
	if err != nil {
		return err
	}
	cl, err := e.c.sub(nr.sub)
	if err != nil {
		return err
	}
	unlock := e.lock(id)
	defer unlock()
	for attempt := 1; ; attempt++ {
		nsg, err := e.c.getNSG(ctx, id)
		if err != nil {
			return err
		}
		plan, err := planNSG(nr.name, securityRules(nsg), vmr.name, vmTag(vmr.id), ip, denies, allows)
		if err != nil {
			return err
		}
		err = e.execute(ctx, cl, nr, plan)
		if err != nil && errorCode(err) == "SecurityRuleConflict" && attempt < conflictRetries {
			e.log.Warn("azure nsg priority taken meanwhile, planning again", "nsg", nr.name, "vm", vmr.name, "err", err)
			continue
		}
		if err == nil && !plan.empty() {
			if len(plan.shadowed) > 0 {
				e.log.Info("azure jit lock shadows rules", "nsg", nr.name, "vm", vmr.name, "rules", ruleNames(plan.shadowed))
			}
			if len(plan.bypass) > 0 {
				e.log.Warn("azure rules ahead of the jit lock still let their sources in", "nsg", nr.name, "vm", vmr.name, "rules", ruleNames(plan.bypass))
			}
		}
		return err
	}
}

// execute carries out plan in nsg, in the plan's order.
func (e *Enforcer) execute(ctx context.Context, cl *clients, nsg resource, plan nsgPlan) error {
	opts := &runtime.PollUntilDoneOptions{Frequency: e.poll}
	del := func(name string) error {
		what := fmt.Sprintf("security rule %s in network security group %s", name, nsg.name)
		poller, err := cl.rules.BeginDelete(ctx, nsg.group, nsg.name, name, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, opts)
		}
		if err != nil && httpStatus(err) != 404 {
			return writeError(err, what)
		}
		e.log.Info("azure nsg rule deleted", "nsg", nsg.name, "rule", name)
		return nil
	}
	for _, name := range plan.deleteFirst {
		if err := del(name); err != nil {
			return err
		}
	}
	for _, s := range plan.put {
		what := fmt.Sprintf("security rule %s in network security group %s", s.name, nsg.name)
		poller, err := cl.rules.BeginCreateOrUpdate(ctx, nsg.group, nsg.name, s.name, s.rule(), nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, opts)
		}
		if err != nil {
			return writeError(err, what)
		}
		e.log.Info("azure nsg rule written", "nsg", nsg.name, "rule", s.name, "priority", s.priority, "access", s.access)
	}
	for _, name := range plan.deleteLast {
		if err := del(name); err != nil {
			return err
		}
	}
	return nil
}

// lock serializes changes to one NSG.
func (e *Enforcer) lock(nsgID string) (unlock func()) {
	key := strings.ToLower(nsgID)
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

func ruleNames(rules []*armnetwork.SecurityRule) []string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = deref(r.Name)
	}
	return names
}

func securityRules(nsg *armnetwork.SecurityGroup) []*armnetwork.SecurityRule {
	if nsg == nil || nsg.Properties == nil {
		return nil
	}
	return nsg.Properties.SecurityRules
}

// labelNSGs returns the NSG ids discovery recorded on vm.
func labelNSGs(vm jit.VM) []string {
	var ids []string
	for _, id := range strings.Split(vm.Labels[LabelNSG], ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
