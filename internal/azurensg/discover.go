package azurensg

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/jit"
)

// Labels Discover puts on the VMs it finds.
const (
	LabelSubscription  = "azure.subscription"
	LabelResourceGroup = "azure.resource-group" // as Azure spells it; jit.VM.Group is lower-cased
	LabelLocation      = "azure.location"
	LabelNIC           = "azure.nic"         // ARM id of the primary NIC
	LabelNSG           = "azure.nsg"         // ARM ids of the NSGs in front of the VM, comma-separated, the NIC's first
	LabelPowerState    = "azure.power-state" // running, stopped, deallocated, ...
)

// ManagementPorts are the TCP ports whose exposure to the internet makes a
// VM unhealthy (JIT recommended).
var ManagementPorts = []int{22, 3389, 5985, 5986}

// Discover lists the VMs of subscriptionID, in resourceGroups or in the
// whole subscription when resourceGroups is empty. Per VM it reads the power
// state, the primary NIC and its addresses, and the NSGs on the NIC and its
// subnet. A VM that ajar cannot enforce on (no NSG, stopped, deallocated,
// a read refused) comes back with Report.Enforceable false and the reason;
// Report.Exposed lists the management ports an NSG opens to the internet.
// An error means the listing itself failed (jit.EForbidden when refused).
func (c *Client) Discover(ctx context.Context, subscriptionID string, resourceGroups []string) ([]jit.Discovered, error) {
	cl, err := c.sub(subscriptionID)
	if err != nil {
		return nil, err
	}
	vms, err := listVMs(ctx, cl, subscriptionID, resourceGroups)
	if err != nil {
		return nil, err
	}
	d := discovery{c: c, nsgs: map[string]nsgResult{}}
	out := make([]jit.Discovered, 0, len(vms))
	for _, vm := range vms {
		found, err := d.vm(ctx, cl, vm)
		if err != nil {
			return nil, err
		}
		out = append(out, found)
	}
	slices.SortFunc(out, func(a, b jit.Discovered) int {
		return cmp.Or(cmp.Compare(a.VM.Group, b.VM.Group), cmp.Compare(a.VM.Name, b.VM.Name))
	})
	return out, nil
}

func listVMs(ctx context.Context, cl *clients, subscriptionID string, resourceGroups []string) ([]*armcompute.VirtualMachine, error) {
	var vms []*armcompute.VirtualMachine
	if len(resourceGroups) == 0 {
		pager := cl.vms.NewListAllPager(nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, listError(err, "subscription "+subscriptionID)
			}
			vms = append(vms, page.Value...)
		}
		return vms, nil
	}
	for _, rg := range resourceGroups {
		pager := cl.vms.NewListPager(rg, nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, listError(err, "resource group "+rg)
			}
			vms = append(vms, page.Value...)
		}
	}
	return vms, nil
}

func listError(err error, scope string) error {
	switch httpStatus(err) {
	case 401, 403:
		return &jit.Error{Code: jit.EForbidden, Message: "ajar lacks permission to list the virtual machines of " + scope, Target: scope}
	case 404:
		return &jit.Error{Code: jit.ENotFound, Message: "not found in Azure: " + scope, Target: scope}
	}
	return fmt.Errorf("list virtual machines of %s: %w", scope, err)
}

// discovery is one run of Discover; it reads each NSG once.
type discovery struct {
	c    *Client
	nsgs map[string]nsgResult
}

type nsgResult struct {
	nsg *armnetwork.SecurityGroup
	err error
}

func (d *discovery) nsg(ctx context.Context, id string) (*armnetwork.SecurityGroup, error) {
	key := strings.ToLower(id)
	if r, ok := d.nsgs[key]; ok {
		return r.nsg, r.err
	}
	nsg, err := d.c.getNSG(ctx, id)
	d.nsgs[key] = nsgResult{nsg, err}
	return nsg, err
}

// Reasons a VM is not enforceable.
const (
	ReasonNoNSG = "no network security group on the VM's NIC or subnet"
)

func (d *discovery) vm(ctx context.Context, cl *clients, vm *armcompute.VirtualMachine) (jit.Discovered, error) {
	if vm == nil || vm.ID == nil {
		return jit.Discovered{}, fmt.Errorf("list virtual machines: a VM without id")
	}
	r, err := parseID(*vm.ID, typeVM)
	if err != nil {
		return jit.Discovered{}, err
	}
	v := jit.VM{
		Name:       r.name,
		Group:      strings.ToLower(r.group),
		Backend:    jit.BackendAzure,
		OS:         osOf(vm),
		ExternalID: *vm.ID,
		Labels: map[string]string{
			LabelSubscription:  r.sub,
			LabelResourceGroup: r.group,
			LabelLocation:      strings.ToLower(deref(vm.Location)),
		},
	}
	rep := jit.Report{Time: d.c.now().UTC(), OS: v.OS, Enforceable: true}
	// Reasons, most fundamental first; the first one found is reported.
	var denied, unusable, power string
	// keep records a refusal (403) or a VM ajar cannot use and drops the
	// error; any other error stays an error.
	keep := func(err error) error {
		switch jit.ErrorCode(err) {
		case jit.EForbidden:
			if denied == "" {
				denied = jit.ErrorMessage(err)
			}
			return nil
		case jit.EConflict, jit.ENotFound:
			if unusable == "" {
				unusable = jit.ErrorMessage(err)
			}
			return nil
		}
		return err
	}

	iv, err := cl.vms.InstanceView(ctx, r.group, r.name, nil)
	if err != nil {
		if err := keep(readError(err, "the instance view of VM "+r.name)); err != nil {
			return jit.Discovered{}, err
		}
	} else {
		rep.Hostname = deref(iv.ComputerName)
		state := powerState(iv.Statuses)
		if state != "" {
			v.Labels[LabelPowerState] = state
		}
		switch state {
		case "stopped", "stopping", "deallocated", "deallocating":
			power = "VM is " + state
		}
	}

	path, err := d.c.path(ctx, vm)
	if err != nil {
		if err := keep(err); err != nil {
			return jit.Discovered{}, err
		}
	} else {
		v.Addresses = []string{path.ip.String()}
		v.Labels[LabelNIC] = path.nic
		if len(path.nsgs) > 0 {
			v.Labels[LabelNSG] = strings.Join(path.nsgs, ",")
		} else if unusable == "" {
			unusable = ReasonNoNSG
		}
		if path.publicIP != "" {
			ip, err := d.c.publicIP(ctx, path.publicIP)
			switch {
			case err == nil && ip.IsValid():
				v.Addresses = append(v.Addresses, ip.String())
			case err != nil && jit.ErrorCode(err) != jit.EInternal:
				d.c.log.Warn("azure discovery: public IP unknown", "vm", r.name, "err", err)
			case err != nil:
				return jit.Discovered{}, err
			}
		}
		var groups []*armnetwork.SecurityGroup
		for _, id := range path.nsgs {
			nsg, err := d.nsg(ctx, id)
			if err != nil {
				if err := keep(err); err != nil {
					return jit.Discovered{}, err
				}
				continue
			}
			groups = append(groups, nsg)
		}
		if len(groups) == len(path.nsgs) && len(groups) > 0 {
			rep.Exposed = exposed(groups, path.ip)
		}
	}

	if reason := cmp.Or(denied, unusable, power); reason != "" {
		rep.Enforceable = false
		rep.Reason = reason
	}
	return jit.Discovered{VM: v, Report: rep}, nil
}

// publicIP reads the address of the public IP resource id (invalid when
// none is allocated).
func (c *Client) publicIP(ctx context.Context, id string) (netip.Addr, error) {
	r, err := parseID(id, typePIP)
	if err != nil {
		return netip.Addr{}, err
	}
	cl, err := c.sub(r.sub)
	if err != nil {
		return netip.Addr{}, err
	}
	resp, err := cl.publicIPs.Get(ctx, r.group, r.name, nil)
	if err != nil {
		return netip.Addr{}, readError(err, "public IP address "+r.name)
	}
	if resp.Properties == nil || resp.Properties.IPAddress == nil {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(*resp.Properties.IPAddress)
	if err != nil {
		return netip.Addr{}, nil
	}
	return ip, nil
}

// osOf returns "linux", "windows" or "".
func osOf(vm *armcompute.VirtualMachine) string {
	p := vm.Properties
	if p == nil {
		return ""
	}
	if p.StorageProfile != nil && p.StorageProfile.OSDisk != nil && p.StorageProfile.OSDisk.OSType != nil {
		return strings.ToLower(string(*p.StorageProfile.OSDisk.OSType))
	}
	if p.OSProfile != nil {
		switch {
		case p.OSProfile.LinuxConfiguration != nil:
			return "linux"
		case p.OSProfile.WindowsConfiguration != nil:
			return "windows"
		}
	}
	return ""
}

// powerState returns the VM's power state ("running", "deallocated", ...)
// from its instance view statuses, "" when it has none.
func powerState(statuses []*armcompute.InstanceViewStatus) string {
	for _, s := range statuses {
		if s == nil || s.Code == nil {
			continue
		}
		if state, ok := strings.CutPrefix(*s.Code, "PowerState/"); ok {
			return strings.ToLower(state)
		}
	}
	return ""
}

// exposed returns the management ports that new TCP connections from the
// internet reach at ip through every NSG in groups.
func exposed(groups []*armnetwork.SecurityGroup, ip netip.Addr) []jit.Socket {
	var out []jit.Socket
	for _, port := range ManagementPorts {
		open := true
		for _, g := range groups {
			if !openToInternet(g, ip, port) {
				open = false
				break
			}
		}
		if open {
			out = append(out, jit.Socket{Protocol: jit.ProtoTCP, Port: port})
		}
	}
	return out
}

// openToInternet evaluates the inbound rules of g the way Azure does (by
// priority, first match wins, then the default rules) for TCP to ip:port
// from any internet address, considering only rules whose source holds
// every internet address (*, Internet, 0.0.0.0/0). Default rules that are
// absent count as Azure's: deny.
func openToInternet(g *armnetwork.SecurityGroup, ip netip.Addr, port int) bool {
	var rules []*armnetwork.SecurityRule
	if g.Properties != nil {
		rules = append(sortedInbound(g.Properties.SecurityRules), sortedInbound(g.Properties.DefaultSecurityRules)...)
	}
	for _, r := range rules {
		p := r.Properties
		if !fromAnywhere(p) || !overlaps(p, armnetwork.SecurityRuleProtocolTCP, []int{port}, ip) {
			continue
		}
		return deref(p.Access) == armnetwork.SecurityRuleAccessAllow
	}
	return false
}

// sortedInbound returns the inbound rules of rules by priority.
func sortedInbound(rules []*armnetwork.SecurityRule) []*armnetwork.SecurityRule {
	var in []*armnetwork.SecurityRule
	for _, r := range rules {
		if r != nil && isInbound(r.Properties) {
			in = append(in, r)
		}
	}
	slices.SortStableFunc(in, func(a, b *armnetwork.SecurityRule) int {
		return cmp.Compare(deref(a.Properties.Priority), deref(b.Properties.Priority))
	})
	return in
}
