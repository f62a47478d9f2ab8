// Package azurefake is a stateful in-memory Azure for tests: the real
// armcompute and armnetwork clients talk to it through the SDK's own fake
// servers (their ServerFactoryTransports). It keeps VMs, NICs, subnets,
// public IPs and NSGs, stores each security rule as the JSON Azure would
// return (so tests can check that rules ajar does not own stay
// byte-identical), validates rule writes as Azure does, can refuse (403)
// or fail (500) chosen calls, and evaluates inbound traffic the way NSGs
// do (Reachable).
//
// Point a client at it with ClientOptions and Credential:
//
//	f := azurefake.New(t)
//	c := azurensg.NewClient(f.Credential(), f.ClientOptions(), logger, nil)
package azurefake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	netfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6/fake"
)

// The subscription and location of everything the fake holds.
const (
	Subscription = "00000000-0000-0000-0000-000000000001"
	Location     = "westeurope"
)

// VNet is the address space of every fake VNet: what the VirtualNetwork
// service tag holds.
var VNet = netip.MustParsePrefix("10.0.0.0/16")

// Shorthands for building rules.
const (
	Allow       = armnetwork.SecurityRuleAccessAllow
	Deny        = armnetwork.SecurityRuleAccessDeny
	TCP         = armnetwork.SecurityRuleProtocolTCP
	UDP         = armnetwork.SecurityRuleProtocolUDP
	AnyProtocol = armnetwork.SecurityRuleProtocolAsterisk
)

// Azure is the in-memory Azure. Its methods are safe for concurrent use.
type Azure struct {
	t  testing.TB
	mu sync.Mutex

	vms     map[string]*fakeVM // by key(rg, name)
	nics    map[string]armnetwork.Interface
	subnets map[string]armnetwork.Subnet // by key(rg, vnet, name)
	pips    map[string]armnetwork.PublicIPAddress
	nsgs    map[string]*NSG

	writes    int             // security rule create-or-update and delete calls
	refuse    map[string]bool // calls answered 403
	fail      map[string]int  // calls answered 500, how many more times
	polls     int             // non-terminal responses of each rule write
	beforePut func(nsg *NSG, name string, r armnetwork.SecurityRule)
}

type fakeVM struct {
	vm       armcompute.VirtualMachine
	power    string
	computer string
}

// NSG is a network security group of the fake.
type NSG struct {
	f        *Azure
	id, name string
	rules    map[string][]byte // the stored JSON of each rule, by name
}

func key(parts ...string) string { return strings.ToLower(strings.Join(parts, "/")) }

// New returns an empty Azure that reports its internal errors to t.
func New(t testing.TB) *Azure {
	return &Azure{
		t:       t,
		vms:     map[string]*fakeVM{},
		nics:    map[string]armnetwork.Interface{},
		subnets: map[string]armnetwork.Subnet{},
		pips:    map[string]armnetwork.PublicIPAddress{},
		nsgs:    map[string]*NSG{},
		refuse:  map[string]bool{},
		fail:    map[string]int{},
		polls:   1,
	}
}

// ID returns the ARM id of a resource of type typ ("Microsoft.Network/
// networkSecurityGroups") named name in resource group rg.
func ID(rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", Subscription, rg, typ, name)
}

// ClientOptions returns SDK client options whose transport is the fake.
func (f *Azure) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: f.transport()}}
}

// Credential returns a credential the fake accepts.
func (f *Azure) Credential() azcore.TokenCredential { return &azfake.TokenCredential{} }

// SetPolls sets how many times a client polls a rule write before it is
// done (1 by default; 0 makes writes finish at once).
func (f *Azure) SetPolls(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls = n
}

// Refuse makes calls answer 403 AuthorizationFailed. call is
// "<Client>.<Method>" ("SecurityGroupsClient.Get"), optionally followed by
// a space and the resource's name (for lists, the resource group) to
// refuse only that one.
func (f *Azure) Refuse(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[call] = true
}

// Fail makes the next n calls matching call (as for Refuse) answer 500
// InternalServerError.
func (f *Azure) Fail(call string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[call] = n
}

// BeforePut sets a hook that runs, with the fake locked, before a rule is
// written; it may change the NSG with NSG.Put.
func (f *Azure) BeforePut(fn func(nsg *NSG, name string, r armnetwork.SecurityRule)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforePut = fn
}

// refused returns the status a call of method on name must answer with,
// 0 when it may proceed. f.mu is held.
func (f *Azure) refused(method, name string) int {
	if f.refuse[method] || f.refuse[method+" "+name] {
		return http.StatusForbidden
	}
	for _, k := range []string{method + " " + name, method} {
		if f.fail[k] > 0 {
			f.fail[k]--
			return http.StatusInternalServerError
		}
	}
	return 0
}

// Rule builds an inbound security rule; ports is one range spec ("22",
// "8000-9000", "*").
func Rule(name string, priority int32, access armnetwork.SecurityRuleAccess, source, ports string, proto armnetwork.SecurityRuleProtocol) armnetwork.SecurityRule {
	return armnetwork.SecurityRule{
		Name: to.Ptr(name),
		Properties: &armnetwork.SecurityRulePropertiesFormat{
			Access:                   to.Ptr(access),
			Direction:                to.Ptr(armnetwork.SecurityRuleDirectionInbound),
			Priority:                 to.Ptr(priority),
			Protocol:                 to.Ptr(proto),
			SourceAddressPrefix:      to.Ptr(source),
			SourcePortRange:          to.Ptr("*"),
			DestinationAddressPrefix: to.Ptr("*"),
			DestinationPortRange:     to.Ptr(ports),
			Description:              to.Ptr("set up by the operator"),
		},
	}
}

// AddNSG creates an NSG holding rules and returns its id.
func (f *Azure) AddNSG(rg, name string, rules ...armnetwork.SecurityRule) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := ID(rg, "Microsoft.Network/networkSecurityGroups", name)
	n := &NSG{f: f, id: id, name: name, rules: map[string][]byte{}}
	for _, r := range rules {
		n.Put(r)
	}
	f.nsgs[key(rg, name)] = n
	return id
}

// AddRule adds (or replaces) a rule directly, as an operator would.
func (f *Azure) AddRule(nsgID string, r armnetwork.SecurityRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsgByID(nsgID).Put(r)
}

func (f *Azure) nsgByID(id string) *NSG {
	for _, n := range f.nsgs {
		if strings.EqualFold(n.id, id) {
			return n
		}
	}
	f.t.Fatalf("no NSG %s", id)
	return nil
}

// Put stores r in the NSG as Azure would (id, type, etag, provisioning
// state filled in) and returns what it stored. The fake must be locked:
// call it from a BeforePut hook only.
func (n *NSG) Put(r armnetwork.SecurityRule) armnetwork.SecurityRule {
	name := *r.Name
	r.ID = to.Ptr(n.id + "/securityRules/" + name)
	r.Name = to.Ptr(name)
	r.Type = to.Ptr("Microsoft.Network/networkSecurityGroups/securityRules")
	r.Etag = to.Ptr(fmt.Sprintf("W/\"%d\"", time.Now().UnixNano()))
	if r.Properties != nil {
		p := *r.Properties
		p.ProvisioningState = to.Ptr(armnetwork.ProvisioningStateSucceeded)
		r.Properties = &p
	}
	b, err := json.Marshal(r)
	if err != nil {
		n.f.t.Errorf("marshal rule: %v", err)
	}
	n.rules[name] = b
	return r
}

// AddSubnet creates a subnet of vnet, with the NSG nsgID ("" for none),
// and returns its id.
func (f *Azure) AddSubnet(rg, vnet, name, nsgID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := ID(rg, "Microsoft.Network/virtualNetworks", vnet+"/subnets/"+name)
	s := armnetwork.Subnet{ID: to.Ptr(id), Name: to.Ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/24")}}
	if nsgID != "" {
		s.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(nsgID)}
	}
	f.subnets[key(rg, vnet, name)] = s
	return id
}

// VMSpec describes a VM for AddVM.
type VMSpec struct {
	ResourceGroup, Name string
	OS                  armcompute.OperatingSystemTypes // default Linux
	Power               string                          // running (default), stopped, deallocated, ...
	IP                  string                          // private IP of the primary NIC
	PublicIP            string                          // "" for none
	NICNSG              string                          // NSG id on the NIC, "" for none
	Subnet              string                          // subnet id, "" for none
}

// AddVM creates (or replaces) a VM with one NIC, "<name>-nic", and
// returns the VM's id.
func (f *Azure) AddVM(s VMSpec) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.OS == "" {
		s.OS = armcompute.OperatingSystemTypesLinux
	}
	if s.Power == "" {
		s.Power = "running"
	}
	rg := s.ResourceGroup
	nicName := s.Name + "-nic"
	nicID := ID(rg, "Microsoft.Network/networkInterfaces", nicName)
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{
		Primary:          to.Ptr(true),
		PrivateIPAddress: to.Ptr(s.IP),
	}
	if s.Subnet != "" {
		ipc.Subnet = &armnetwork.Subnet{ID: to.Ptr(s.Subnet)}
	}
	if s.PublicIP != "" {
		pipName := s.Name + "-ip"
		pipID := ID(rg, "Microsoft.Network/publicIPAddresses", pipName)
		f.pips[key(rg, pipName)] = armnetwork.PublicIPAddress{ID: to.Ptr(pipID), Name: to.Ptr(pipName),
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{IPAddress: to.Ptr(s.PublicIP)}}
		ipc.PublicIPAddress = &armnetwork.PublicIPAddress{ID: to.Ptr(pipID)}
	}
	nic := armnetwork.Interface{ID: to.Ptr(nicID), Name: to.Ptr(nicName), Location: to.Ptr(Location),
		Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{
				{Name: to.Ptr("ipconfig1"), Properties: ipc},
			},
		}}
	if s.NICNSG != "" {
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(s.NICNSG)}
	}
	f.nics[key(rg, nicName)] = nic

	id := ID(rg, "Microsoft.Compute/virtualMachines", s.Name)
	f.vms[key(rg, s.Name)] = &fakeVM{power: s.Power, computer: s.Name + "-host", vm: armcompute.VirtualMachine{
		ID: to.Ptr(id), Name: to.Ptr(s.Name), Location: to.Ptr(Location),
		Type: to.Ptr("Microsoft.Compute/virtualMachines"),
		Properties: &armcompute.VirtualMachineProperties{
			StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{OSType: to.Ptr(s.OS)}},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{
				{ID: to.Ptr(nicID), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(true)}},
			}},
		},
	}}
	return id
}

// SetPower changes the power state of a VM ("running", "deallocated", ...).
func (f *Azure) SetPower(rg, name, power string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vms[key(rg, name)]
	if !ok {
		f.t.Fatalf("no VM %s/%s", rg, name)
	}
	v.power = power
}

// DeleteVM deletes a VM and its NIC.
func (f *Azure) DeleteVM(rg, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, key(rg, name))
	delete(f.nics, key(rg, name+"-nic"))
}

// WriteCount returns how many rule writes (PUT or DELETE) Azure got.
func (f *Azure) WriteCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Rules returns the stored JSON of the NSG's rules whose name ajarOwned
// selects (true: the names starting with "ajar-", false: all others).
func (f *Azure) Rules(nsgID string, ajarOwned bool) map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]byte{}
	for name, b := range f.nsgByID(nsgID).rules {
		if strings.HasPrefix(name, "ajar-") == ajarOwned {
			out[name] = bytes.Clone(b)
		}
	}
	return out
}

// GetRule returns one stored rule, decoded.
func (f *Azure) GetRule(nsgID, name string) (armnetwork.SecurityRule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.nsgByID(nsgID).rules[name]
	if !ok {
		return armnetwork.SecurityRule{}, false
	}
	var r armnetwork.SecurityRule
	if err := json.Unmarshal(b, &r); err != nil {
		f.t.Fatalf("unmarshal rule: %v", err)
	}
	return r, true
}

func (f *Azure) decoded(n *NSG) []*armnetwork.SecurityRule {
	names := make([]string, 0, len(n.rules))
	for name := range n.rules {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]*armnetwork.SecurityRule, 0, len(names))
	for _, name := range names {
		var r armnetwork.SecurityRule
		if err := json.Unmarshal(n.rules[name], &r); err != nil {
			f.t.Errorf("unmarshal rule: %v", err)
			continue
		}
		out = append(out, &r)
	}
	return out
}

// DefaultRules are Azure's inbound default rules.
func DefaultRules() []*armnetwork.SecurityRule {
	mk := func(name string, prio int32, access armnetwork.SecurityRuleAccess, src, dst string) *armnetwork.SecurityRule {
		r := Rule(name, prio, access, src, "*", AnyProtocol)
		r.Properties.DestinationAddressPrefix = to.Ptr(dst)
		r.Properties.Description = nil
		return &r
	}
	return []*armnetwork.SecurityRule{
		mk("AllowVnetInBound", 65000, Allow, "VirtualNetwork", "VirtualNetwork"),
		mk("AllowAzureLoadBalancerInBound", 65001, Allow, "AzureLoadBalancer", "*"),
		mk("DenyAllInBound", 65500, Deny, "*", "*"),
	}
}

// --- fake servers -------------------------------------------------------

func failed[T any](status int, code string) (azfake.Responder[T], azfake.ErrorResponder) {
	var errResp azfake.ErrorResponder
	errResp.SetResponseError(status, code)
	return azfake.Responder[T]{}, errResp
}

// errorCode is Azure's error code for status.
func errorCode(status int) string {
	switch status {
	case http.StatusForbidden:
		return "AuthorizationFailed"
	case http.StatusNotFound:
		return "ResourceNotFound"
	}
	return "InternalServerError"
}

func ok[T any](v T) (azfake.Responder[T], azfake.ErrorResponder) {
	var resp azfake.Responder[T]
	resp.SetResponse(http.StatusOK, v, nil)
	return resp, azfake.ErrorResponder{}
}

func (f *Azure) transport() policy.Transporter {
	compute := computefake.NewServerFactoryTransport(&computefake.ServerFactory{
		VirtualMachinesServer: computefake.VirtualMachinesServer{
			Get:             f.getVM,
			InstanceView:    f.instanceView,
			NewListPager:    f.listVMs,
			NewListAllPager: f.listAllVMs,
		},
	})
	network := netfake.NewServerFactoryTransport(&netfake.ServerFactory{
		InterfacesServer:        netfake.InterfacesServer{Get: f.getNIC},
		SubnetsServer:           netfake.SubnetsServer{Get: f.getSubnet},
		PublicIPAddressesServer: netfake.PublicIPAddressesServer{Get: f.getPublicIP},
		SecurityGroupsServer:    netfake.SecurityGroupsServer{Get: f.getNSG},
		SecurityRulesServer: netfake.SecurityRulesServer{
			BeginCreateOrUpdate: f.putRule,
			BeginDelete:         f.deleteRule,
			Get:                 f.getRule,
		},
	})
	return transportFunc(func(req *http.Request) (*http.Response, error) {
		// The SDK's fake servers close their result channel when the
		// request's context ends while their handler goroutine may still
		// send on it (a data race, or a panic). The fake answers at once,
		// so it gets a context that does not end.
		req = req.WithContext(context.WithoutCancel(req.Context()))
		api, _ := req.Context().Value(runtime.CtxAPINameKey{}).(string)
		if strings.HasPrefix(api, "VirtualMachinesClient.") {
			return compute.Do(req)
		}
		return network.Do(req)
	})
}

type transportFunc func(*http.Request) (*http.Response, error)

func (fn transportFunc) Do(req *http.Request) (*http.Response, error) { return fn(req) }

type (
	vmGet   = armcompute.VirtualMachinesClientGetResponse
	vmView  = armcompute.VirtualMachinesClientInstanceViewResponse
	vmList  = armcompute.VirtualMachinesClientListResponse
	vmAll   = armcompute.VirtualMachinesClientListAllResponse
	nicGet  = armnetwork.InterfacesClientGetResponse
	snGet   = armnetwork.SubnetsClientGetResponse
	pipGet  = armnetwork.PublicIPAddressesClientGetResponse
	nsgGet  = armnetwork.SecurityGroupsClientGetResponse
	ruleGet = armnetwork.SecurityRulesClientGetResponse
	rulePut = armnetwork.SecurityRulesClientCreateOrUpdateResponse
	ruleDel = armnetwork.SecurityRulesClientDeleteResponse
)

func (f *Azure) getVM(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientGetOptions) (azfake.Responder[vmGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("VirtualMachinesClient.Get", name); st != 0 {
		return failed[vmGet](st, errorCode(st))
	}
	v, found := f.vms[key(rg, name)]
	if !found {
		return failed[vmGet](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(vmGet{VirtualMachine: v.vm})
}

func (f *Azure) instanceView(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientInstanceViewOptions) (azfake.Responder[vmView], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("VirtualMachinesClient.InstanceView", name); st != 0 {
		return failed[vmView](st, errorCode(st))
	}
	v, found := f.vms[key(rg, name)]
	if !found {
		return failed[vmView](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(vmView{VirtualMachineInstanceView: armcompute.VirtualMachineInstanceView{
		ComputerName: to.Ptr(v.computer),
		Statuses: []*armcompute.InstanceViewStatus{
			{Code: to.Ptr("ProvisioningState/succeeded")},
			{Code: to.Ptr("PowerState/" + v.power)},
		},
	}})
}

// vmPages returns the VMs of rg ("" for all), two per page.
func (f *Azure) vmPages(rg string) [][]*armcompute.VirtualMachine {
	var keys []string
	for k := range f.vms {
		if rg == "" || strings.HasPrefix(k, strings.ToLower(rg)+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var pages [][]*armcompute.VirtualMachine
	for i := 0; i < len(keys); i += 2 {
		var page []*armcompute.VirtualMachine
		for _, k := range keys[i:min(i+2, len(keys))] {
			vm := f.vms[k].vm
			page = append(page, &vm)
		}
		pages = append(pages, page)
	}
	return pages
}

func (f *Azure) listVMs(rg string, _ *armcompute.VirtualMachinesClientListOptions) azfake.PagerResponder[vmList] {
	var resp azfake.PagerResponder[vmList]
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("VirtualMachinesClient.NewListPager", rg); st != 0 {
		resp.AddResponseError(st, errorCode(st))
		return resp
	}
	pages := f.vmPages(rg)
	if len(pages) == 0 {
		resp.AddPage(http.StatusOK, vmList{}, nil)
	}
	for _, p := range pages {
		resp.AddPage(http.StatusOK, vmList{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: p}}, nil)
	}
	return resp
}

func (f *Azure) listAllVMs(_ *armcompute.VirtualMachinesClientListAllOptions) azfake.PagerResponder[vmAll] {
	var resp azfake.PagerResponder[vmAll]
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("VirtualMachinesClient.NewListAllPager", ""); st != 0 {
		resp.AddResponseError(st, errorCode(st))
		return resp
	}
	pages := f.vmPages("")
	if len(pages) == 0 {
		resp.AddPage(http.StatusOK, vmAll{}, nil)
	}
	for _, p := range pages {
		resp.AddPage(http.StatusOK, vmAll{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: p}}, nil)
	}
	return resp
}

func (f *Azure) getNIC(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (azfake.Responder[nicGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("InterfacesClient.Get", name); st != 0 {
		return failed[nicGet](st, errorCode(st))
	}
	nic, found := f.nics[key(rg, name)]
	if !found {
		return failed[nicGet](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(nicGet{Interface: nic})
}

func (f *Azure) getSubnet(_ context.Context, rg, vnet, name string, _ *armnetwork.SubnetsClientGetOptions) (azfake.Responder[snGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("SubnetsClient.Get", name); st != 0 {
		return failed[snGet](st, errorCode(st))
	}
	s, found := f.subnets[key(rg, vnet, name)]
	if !found {
		return failed[snGet](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(snGet{Subnet: s})
}

func (f *Azure) getPublicIP(_ context.Context, rg, name string, _ *armnetwork.PublicIPAddressesClientGetOptions) (azfake.Responder[pipGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("PublicIPAddressesClient.Get", name); st != 0 {
		return failed[pipGet](st, errorCode(st))
	}
	p, found := f.pips[key(rg, name)]
	if !found {
		return failed[pipGet](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(pipGet{PublicIPAddress: p})
}

func (f *Azure) getNSG(_ context.Context, rg, name string, _ *armnetwork.SecurityGroupsClientGetOptions) (azfake.Responder[nsgGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("SecurityGroupsClient.Get", name); st != 0 {
		return failed[nsgGet](st, errorCode(st))
	}
	n, found := f.nsgs[key(rg, name)]
	if !found {
		return failed[nsgGet](http.StatusNotFound, "ResourceNotFound")
	}
	return ok(nsgGet{SecurityGroup: armnetwork.SecurityGroup{
		ID: to.Ptr(n.id), Name: to.Ptr(n.name), Location: to.Ptr(Location),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{
			SecurityRules:        f.decoded(n),
			DefaultSecurityRules: DefaultRules(),
		},
	}})
}

func (f *Azure) getRule(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientGetOptions) (azfake.Responder[ruleGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.refused("SecurityRulesClient.Get", name); st != 0 {
		return failed[ruleGet](st, errorCode(st))
	}
	n, found := f.nsgs[key(rg, nsg)]
	if !found || n.rules[name] == nil {
		return failed[ruleGet](http.StatusNotFound, "ResourceNotFound")
	}
	var r armnetwork.SecurityRule
	if err := json.Unmarshal(n.rules[name], &r); err != nil {
		f.t.Errorf("unmarshal rule: %v", err)
	}
	return ok(ruleGet{SecurityRule: r})
}

// putRule validates a rule as Azure does (priority range, required fields,
// one rule per priority and direction), stores it and returns it.
func (f *Azure) putRule(_ context.Context, rg, nsg, name string, r armnetwork.SecurityRule, _ *armnetwork.SecurityRulesClientBeginCreateOrUpdateOptions) (azfake.PollerResponder[rulePut], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errResp azfake.ErrorResponder
	fail := func(status int, code string) (azfake.PollerResponder[rulePut], azfake.ErrorResponder) {
		errResp.SetResponseError(status, code)
		return azfake.PollerResponder[rulePut]{}, errResp
	}
	f.writes++
	if st := f.refused("SecurityRulesClient.BeginCreateOrUpdate", name); st != 0 {
		return fail(st, errorCode(st))
	}
	n, found := f.nsgs[key(rg, nsg)]
	if !found {
		return fail(http.StatusNotFound, "ResourceNotFound")
	}
	if f.beforePut != nil {
		f.beforePut(n, name, r)
	}
	p := r.Properties
	if p == nil || p.Priority == nil || p.Direction == nil || p.Access == nil || p.Protocol == nil ||
		(p.SourceAddressPrefix == nil && len(p.SourceAddressPrefixes) == 0) ||
		(p.DestinationAddressPrefix == nil && len(p.DestinationAddressPrefixes) == 0) ||
		(p.DestinationPortRange == nil && len(p.DestinationPortRanges) == 0) || len(name) > 80 ||
		(p.Description != nil && len(*p.Description) > 140) {
		return fail(http.StatusBadRequest, "InvalidRequestFormat")
	}
	if *p.Priority < 100 || *p.Priority > 4096 {
		return fail(http.StatusBadRequest, "SecurityRuleInvalidPriority")
	}
	for other, b := range n.rules {
		var o armnetwork.SecurityRule
		if err := json.Unmarshal(b, &o); err != nil {
			f.t.Errorf("unmarshal rule: %v", err)
			continue
		}
		if other != name && *o.Properties.Priority == *p.Priority && *o.Properties.Direction == *p.Direction {
			return fail(http.StatusBadRequest, "SecurityRuleConflict")
		}
	}
	status := http.StatusCreated
	if n.rules[name] != nil {
		status = http.StatusOK
	}
	r.Name = to.Ptr(name)
	stored := n.Put(r)
	var resp azfake.PollerResponder[rulePut]
	for range f.polls {
		resp.AddNonTerminalResponse(http.StatusCreated, nil)
	}
	resp.SetTerminalResponse(status, rulePut{SecurityRule: stored}, nil)
	return resp, errResp
}

func (f *Azure) deleteRule(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientBeginDeleteOptions) (azfake.PollerResponder[ruleDel], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errResp azfake.ErrorResponder
	f.writes++
	if st := f.refused("SecurityRulesClient.BeginDelete", name); st != 0 {
		errResp.SetResponseError(st, errorCode(st))
		return azfake.PollerResponder[ruleDel]{}, errResp
	}
	var resp azfake.PollerResponder[ruleDel]
	n, found := f.nsgs[key(rg, nsg)]
	if !found || n.rules[name] == nil {
		resp.SetTerminalResponse(http.StatusNoContent, ruleDel{}, nil)
		return resp, errResp
	}
	delete(n.rules, name)
	for range f.polls {
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	resp.SetTerminalResponse(http.StatusOK, ruleDel{}, nil)
	return resp, errResp
}

// --- how Azure evaluates inbound traffic --------------------------------

// Reachable reports whether a new connection from src to port/proto on
// the VM vmID passes its subnet's NSG and then its NIC's NSG, each
// evaluated as Azure does: inbound rules by ascending priority, the first
// match decides, then the default rules.
func (f *Azure) Reachable(t testing.TB, vmID string, src netip.Addr, port int, proto string) bool {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var vm *fakeVM
	for _, v := range f.vms {
		if strings.EqualFold(*v.vm.ID, vmID) {
			vm = v
		}
	}
	if vm == nil {
		t.Fatalf("no VM %s", vmID)
	}
	nicID := *vm.vm.Properties.NetworkProfile.NetworkInterfaces[0].ID
	var nic armnetwork.Interface
	for _, n := range f.nics {
		if strings.EqualFold(*n.ID, nicID) {
			nic = n
		}
	}
	ipc := nic.Properties.IPConfigurations[0].Properties
	dst := netip.MustParseAddr(*ipc.PrivateIPAddress)
	var nsgs []string
	if ipc.Subnet != nil {
		for _, s := range f.subnets {
			if strings.EqualFold(*s.ID, *ipc.Subnet.ID) && s.Properties.NetworkSecurityGroup != nil {
				nsgs = append(nsgs, *s.Properties.NetworkSecurityGroup.ID)
			}
		}
	}
	if nic.Properties.NetworkSecurityGroup != nil {
		nsgs = append(nsgs, *nic.Properties.NetworkSecurityGroup.ID)
	}
	for _, id := range nsgs {
		rules := f.decoded(f.nsgByID(id))
		slices.SortFunc(rules, func(a, b *armnetwork.SecurityRule) int {
			return int(*a.Properties.Priority - *b.Properties.Priority)
		})
		if !evaluate(append(rules, DefaultRules()...), src, dst, port, proto) {
			return false
		}
	}
	return true
}

func evaluate(rules []*armnetwork.SecurityRule, src, dst netip.Addr, port int, proto string) bool {
	for _, r := range rules {
		p := r.Properties
		if *p.Direction != armnetwork.SecurityRuleDirectionInbound {
			continue
		}
		if *p.Protocol != AnyProtocol && !strings.EqualFold(string(*p.Protocol), proto) {
			continue
		}
		if !matchAddr(p.SourceAddressPrefix, p.SourceAddressPrefixes, src) ||
			!matchAddr(p.DestinationAddressPrefix, p.DestinationAddressPrefixes, dst) ||
			!matchPort(p.DestinationPortRange, p.DestinationPortRanges, port) {
			continue
		}
		return *p.Access == Allow
	}
	return false
}

func matchAddr(one *string, many []*string, a netip.Addr) bool {
	if one != nil {
		many = append(many, one)
	}
	for _, s := range many {
		switch *s {
		case "*":
			return true
		case "VirtualNetwork":
			if VNet.Contains(a) {
				return true
			}
		case "Internet":
			if !VNet.Contains(a) {
				return true
			}
		default:
			if p, err := netip.ParsePrefix(*s); err == nil && p.Contains(a) {
				return true
			}
			if b, err := netip.ParseAddr(*s); err == nil && b == a {
				return true
			}
		}
	}
	return false
}

func matchPort(one *string, many []*string, port int) bool {
	if one != nil {
		many = append(many, one)
	}
	for _, s := range many {
		if *s == "*" {
			return true
		}
		lo, hi, isRange := strings.Cut(*s, "-")
		if !isRange {
			hi = lo
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if a <= port && port <= b {
			return true
		}
	}
	return false
}
