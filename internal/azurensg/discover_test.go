package azurensg

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/jit"
)

// discoveryWorld is a subscription with one VM per case discovery must
// tell apart.
func discoveryWorld(t *testing.T) (*fakeAzure, map[string]string) {
	f := newFakeAzure(t)
	ids := map[string]string{}
	nsg := func(rg, name string) string {
		id := f.AddNSG(rg, name)
		ids[name] = id
		return id
	}
	plainSubnet := f.AddSubnet("rg1", "vnet1", "plain", "")

	// Port 22 open to the internet on the NIC's NSG.
	webNSG := nsg("rg1", "web-nsg")
	f.AddRule(webNSG, rule("allow-ssh-internet", 300, allow, "Internet", "22", tcp))
	f.AddRule(webNSG, rule("allow-http", 310, allow, "*", "80", tcp))
	ids["web1"] = f.AddVM(vmSpec{ResourceGroup: "rg1", Name: "web1", IP: "10.0.1.4", PublicIP: "20.1.2.3", NICNSG: webNSG, Subnet: plainSubnet})

	// The subnet's NSG: RDP allowed from * but denied from * first; WinRM
	// from the VNet only; WinRM over HTTPS from anywhere, but to other hosts.
	winNSG := nsg("rg1", "win-subnet-nsg")
	f.AddRule(winNSG, rule("deny-rdp", 100, deny, "*", "3389", anyP))
	f.AddRule(winNSG, rule("allow-rdp", 200, allow, "*", "3389", tcp))
	f.AddRule(winNSG, rule("allow-winrm-vnet", 210, allow, "10.0.0.0/8", "5985", tcp))
	other := rule("allow-winrm-https-elsewhere", 220, allow, "0.0.0.0/0", "5986", tcp)
	other.Properties.DestinationAddressPrefix = to.Ptr("10.0.3.0/24")
	f.AddRule(winNSG, other)
	winSubnet := f.AddSubnet("rg1", "vnet1", "windows", winNSG)
	ids["win1"] = f.AddVM(vmSpec{ResourceGroup: "rg1", Name: "win1", OS: armcompute.OperatingSystemTypesWindows, IP: "10.0.2.5", Subnet: winSubnet})

	// NIC and subnet NSG: 22 open on the NIC but not on the subnet; 3389 on both.
	bothNIC := nsg("rg1", "both-nic-nsg")
	f.AddRule(bothNIC, rule("allow-ssh", 100, allow, "*", "22", tcp))
	f.AddRule(bothNIC, rule("allow-rdp", 110, allow, "*", "3389", anyP))
	bothSubnetNSG := nsg("rg1", "both-subnet-nsg")
	f.AddRule(bothSubnetNSG, rule("allow-rdp", 100, allow, "Internet", "3000-4000", tcp))
	bothSubnet := f.AddSubnet("rg1", "vnet1", "both", bothSubnetNSG)
	ids["both1"] = f.AddVM(vmSpec{ResourceGroup: "rg1", Name: "both1", IP: "10.0.4.4", NICNSG: bothNIC, Subnet: bothSubnet})

	ids["bare"] = f.AddVM(vmSpec{ResourceGroup: "rg1", Name: "bare", IP: "10.0.1.7", Subnet: plainSubnet})
	ids["stopped"] = f.AddVM(vmSpec{ResourceGroup: "rg1", Name: "stopped", Power: "stopped", IP: "10.0.1.8", NICNSG: webNSG, Subnet: plainSubnet})

	rg2NSG := nsg("rg2", "rg2-nsg")
	ids["dealloc"] = f.AddVM(vmSpec{ResourceGroup: "RG2", Name: "dealloc", Power: "deallocated", IP: "10.0.1.9", NICNSG: rg2NSG})
	ids["secret"] = f.AddVM(vmSpec{ResourceGroup: "rg2", Name: "secret", IP: "10.0.1.10", NICNSG: rg2NSG})
	f.Refuse("InterfacesClient.Get secret-nic")
	ids["pipless"] = f.AddVM(vmSpec{ResourceGroup: "rg2", Name: "pipless", IP: "10.0.1.11", PublicIP: "20.1.2.4", NICNSG: rg2NSG})
	f.Refuse("PublicIPAddressesClient.Get pipless-ip")
	return f, ids
}

func TestDiscover(t *testing.T) {
	f, ids := discoveryWorld(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	found := func(name, group, os, power string, addrs []string, nsgs string, rep jit.Report) jit.Discovered {
		rep.Time, rep.OS = now, os
		if power != "" {
			rep.Hostname = name + "-host"
		}
		labels := map[string]string{
			LabelSubscription: fakeSub, LabelResourceGroup: group, LabelLocation: fakeLocation,
		}
		if power != "" {
			labels[LabelPowerState] = power
		}
		if addrs != nil {
			labels[LabelNIC] = armID(group, "Microsoft.Network/networkInterfaces", name+"-nic")
		}
		if nsgs != "" {
			labels[LabelNSG] = nsgs
		}
		return jit.Discovered{
			VM: jit.VM{Name: name, Group: lowerASCII(group), Backend: jit.BackendAzure, OS: os, Addresses: addrs,
				ExternalID: ids[name], Labels: labels},
			Report: rep,
		}
	}
	ok := jit.Report{Enforceable: true}
	notOK := func(reason string) jit.Report { return jit.Report{Reason: reason} }
	rg1 := []jit.Discovered{
		found("bare", "rg1", "linux", "running", []string{"10.0.1.7"}, "", notOK(ReasonNoNSG)),
		found("both1", "rg1", "linux", "running", []string{"10.0.4.4"}, ids["both-nic-nsg"]+","+ids["both-subnet-nsg"],
			jit.Report{Enforceable: true, Exposed: []jit.Socket{{Protocol: "TCP", Port: 3389}}}),
		found("stopped", "rg1", "linux", "stopped", []string{"10.0.1.8"}, ids["web-nsg"],
			jit.Report{Reason: "VM is stopped", Exposed: []jit.Socket{{Protocol: "TCP", Port: 22}}}),
		found("web1", "rg1", "linux", "running", []string{"10.0.1.4", "20.1.2.3"}, ids["web-nsg"],
			jit.Report{Enforceable: true, Exposed: []jit.Socket{{Protocol: "TCP", Port: 22}}}),
		found("win1", "rg1", "windows", "running", []string{"10.0.2.5"}, ids["win-subnet-nsg"], ok),
	}
	rg2 := []jit.Discovered{
		found("dealloc", "RG2", "linux", "deallocated", []string{"10.0.1.9"}, ids["rg2-nsg"], notOK("VM is deallocated")),
		found("pipless", "rg2", "linux", "running", []string{"10.0.1.11"}, ids["rg2-nsg"], ok),
		found("secret", "rg2", "linux", "running", nil, "",
			notOK("ajar lacks permission to read network interface secret-nic (AuthorizationFailed)")),
	}

	c := f.client()
	ctx := context.Background()
	t.Run("subscription", func(t *testing.T) {
		got, err := c.Discover(ctx, fakeSub, nil)
		if err != nil {
			t.Fatalf("discover: %v", err)
		}
		if diff := cmp.Diff(append(append([]jit.Discovered{}, rg1...), rg2...), got); diff != "" {
			t.Errorf("discovered (-want +got):\n%s", diff)
		}
	})
	t.Run("resource group", func(t *testing.T) {
		got, err := c.Discover(ctx, fakeSub, []string{"rg2"})
		if err != nil {
			t.Fatalf("discover: %v", err)
		}
		if diff := cmp.Diff(rg2, got); diff != "" {
			t.Errorf("discovered (-want +got):\n%s", diff)
		}
	})
	t.Run("listing refused", func(t *testing.T) {
		f.Refuse("VirtualMachinesClient.NewListPager rg3")
		_, err := c.Discover(ctx, fakeSub, []string{"rg1", "rg3"})
		if jit.ErrorCode(err) != jit.EForbidden || jit.ErrorMessage(err) != "ajar lacks permission to list the virtual machines of resource group rg3" {
			t.Fatalf("discover = %v, want a %s error", err, jit.EForbidden)
		}
	})
	t.Run("empty resource group", func(t *testing.T) {
		got, err := c.Discover(ctx, fakeSub, []string{"empty"})
		if err != nil || len(got) != 0 {
			t.Fatalf("discover = %v, %v; want nothing", got, err)
		}
	})
	t.Run("NSG refused", func(t *testing.T) {
		f.Refuse("SecurityGroupsClient.Get web-nsg")
		f.Refuse("VirtualMachinesClient.InstanceView win1")
		got, err := c.Discover(ctx, fakeSub, []string{"rg1"})
		if err != nil {
			t.Fatalf("discover: %v", err)
		}
		reasons := map[string]string{}
		for _, d := range got {
			reasons[d.VM.Name] = d.Report.Reason
			if d.Report.Enforceable != (d.Report.Reason == "") {
				t.Errorf("%s: enforceable %v with reason %q", d.VM.Name, d.Report.Enforceable, d.Report.Reason)
			}
		}
		want := map[string]string{
			"bare":    ReasonNoNSG,
			"both1":   "",
			"stopped": "ajar lacks permission to read network security group web-nsg (AuthorizationFailed)",
			"web1":    "ajar lacks permission to read network security group web-nsg (AuthorizationFailed)",
			"win1":    "ajar lacks permission to read the instance view of VM win1 (AuthorizationFailed)",
		}
		if diff := cmp.Diff(want, reasons); diff != "" {
			t.Errorf("reasons (-want +got):\n%s", diff)
		}
	})
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// A VM discovery imported can be enforced on with nothing but what
// discovery found.
func TestDiscoveredVMIsEnforceable(t *testing.T) {
	f, _ := discoveryWorld(t)
	c := f.client()
	ctx := context.Background()
	got, err := c.Discover(ctx, fakeSub, []string{"rg1"})
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	var web jit.VM
	for _, d := range got {
		if d.VM.Name == "web1" {
			web = d.VM
		}
	}
	e := newEnforcer(f)
	if err := e.Apply(ctx, web, state(lock(22))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	got, err = c.Discover(ctx, fakeSub, []string{"rg1"})
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	for _, d := range got {
		if d.VM.Name == "web1" && len(d.Report.Exposed) != 0 {
			t.Errorf("port 22 still exposed under the lock: %v", d.Report.Exposed)
		}
	}
}
