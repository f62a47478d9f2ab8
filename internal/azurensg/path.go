package azurensg

import (
	"context"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/jit"
)

// netPath is where a VM's inbound traffic passes: its primary NIC, that
// NIC's primary private IP, and the NSGs on the NIC and on its subnet.
type netPath struct {
	nic      string
	ip       netip.Addr
	publicIP string   // ARM id of the public IP, "" if none
	subnet   string   // ARM id
	nsgs     []string // NSG ARM ids, the NIC's first
}

// getVM reads the VM with ARM id vmID.
func (c *Client) getVM(ctx context.Context, vmID string) (*armcompute.VirtualMachine, error) {
	r, err := parseID(vmID, typeVM)
	if err != nil {
		return nil, err
	}
	cl, err := c.sub(r.sub)
	if err != nil {
		return nil, err
	}
	resp, err := cl.vms.Get(ctx, r.group, r.name, nil)
	if err != nil {
		return nil, readError(err, "virtual machine "+r.name)
	}
	return &resp.VirtualMachine, nil
}

// path resolves vm's primary NIC, private IP and NSGs.
func (c *Client) path(ctx context.Context, vm *armcompute.VirtualMachine) (netPath, error) {
	name := deref(vm.Name)
	var refs []*armcompute.NetworkInterfaceReference
	if vm.Properties != nil && vm.Properties.NetworkProfile != nil {
		refs = vm.Properties.NetworkProfile.NetworkInterfaces
	}
	var nicID string
	for _, ref := range refs {
		if ref == nil || ref.ID == nil {
			continue
		}
		if nicID == "" || (ref.Properties != nil && deref(ref.Properties.Primary)) {
			nicID = *ref.ID
		}
	}
	if nicID == "" {
		return netPath{}, jit.Errorf(jit.EConflict, "VM %s has no network interface", name)
	}
	nr, err := parseID(nicID, typeNIC)
	if err != nil {
		return netPath{}, err
	}
	cl, err := c.sub(nr.sub)
	if err != nil {
		return netPath{}, err
	}
	resp, err := cl.nics.Get(ctx, nr.group, nr.name, nil)
	if err != nil {
		return netPath{}, readError(err, "network interface "+nr.name)
	}
	p := netPath{nic: nicID}
	props := resp.Properties
	if props == nil {
		return netPath{}, jit.Errorf(jit.EConflict, "network interface %s has no properties", nr.name)
	}
	if props.NetworkSecurityGroup != nil && props.NetworkSecurityGroup.ID != nil {
		p.nsgs = append(p.nsgs, *props.NetworkSecurityGroup.ID)
	}
	var ipc *armnetwork.InterfaceIPConfigurationPropertiesFormat
	for _, conf := range props.IPConfigurations {
		if conf == nil || conf.Properties == nil {
			continue
		}
		if ipc == nil || deref(conf.Properties.Primary) {
			ipc = conf.Properties
		}
	}
	if ipc == nil || ipc.PrivateIPAddress == nil {
		return netPath{}, jit.Errorf(jit.EConflict, "network interface %s has no private IP address", nr.name)
	}
	if p.ip, err = netip.ParseAddr(*ipc.PrivateIPAddress); err != nil {
		return netPath{}, jit.Errorf(jit.EConflict, "network interface %s has a bad private IP %q", nr.name, *ipc.PrivateIPAddress)
	}
	if ipc.PublicIPAddress != nil && ipc.PublicIPAddress.ID != nil {
		p.publicIP = *ipc.PublicIPAddress.ID
	}
	if ipc.Subnet != nil && ipc.Subnet.ID != nil {
		p.subnet = *ipc.Subnet.ID
		sr, err := parseID(p.subnet, typeSubnet)
		if err != nil {
			return netPath{}, err
		}
		scl, err := c.sub(sr.sub)
		if err != nil {
			return netPath{}, err
		}
		sresp, err := scl.subnets.Get(ctx, sr.group, sr.parent, sr.name, nil)
		if err != nil {
			return netPath{}, readError(err, "subnet "+sr.parent+"/"+sr.name)
		}
		if sp := sresp.Properties; sp != nil && sp.NetworkSecurityGroup != nil && sp.NetworkSecurityGroup.ID != nil {
			if id := *sp.NetworkSecurityGroup.ID; !containsFold(p.nsgs, id) {
				p.nsgs = append(p.nsgs, id)
			}
		}
	}
	return p, nil
}

// getNSG reads the NSG with ARM id id, its rules included.
func (c *Client) getNSG(ctx context.Context, id string) (*armnetwork.SecurityGroup, error) {
	r, err := parseID(id, typeNSG)
	if err != nil {
		return nil, err
	}
	cl, err := c.sub(r.sub)
	if err != nil {
		return nil, err
	}
	resp, err := cl.nsgs.Get(ctx, r.group, r.name, nil)
	if err != nil {
		return nil, readError(err, "network security group "+r.name)
	}
	return &resp.SecurityGroup, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
