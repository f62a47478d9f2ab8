package azurensg

// A stateful in-memory Azure behind the SDK's own fake servers: the real
// armcompute and armnetwork clients talk to it through their
// ServerFactoryTransports, and it keeps VMs, NICs, subnets, public IPs and
// NSGs whose rules it stores as the JSON Azure would return, so tests can
// check that rules ajar does not own stay byte-identical.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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

const (
	fakeSub      = "00000000-0000-0000-0000-000000000001"
	fakeLocation = "westeurope"
)

// fakeVNet is the address space of every fake VNet: what the
// VirtualNetwork service tag holds.
var fakeVNet = netip.MustParsePrefix("10.0.0.0/16")

type fakeAzure struct {
	t  *testing.T
	mu sync.Mutex

	vms     map[string]*fakeVM // by key(rg, name)
	nics    map[string]armnetwork.Interface
	subnets map[string]armnetwork.Subnet // by key(rg, vnet, name)
	pips    map[string]armnetwork.PublicIPAddress
	nsgs    map[string]*fakeNSG

	// writes counts security rule create-or-update and delete calls.
	writes int
	// refuse makes calls answer 403: keys are "<Client.Method> <name>",
	// the name being the resource's (or, for lists, the resource group).
	refuse map[string]bool
	// beforePut, when set, runs (lock held) before a rule is written.
	beforePut func(nsg *fakeNSG, name string, r armnetwork.SecurityRule)
}

type fakeVM struct {
	vm       armcompute.VirtualMachine
	power    string
	computer string
}

type fakeNSG struct {
	id, name string
	rules    map[string][]byte // the stored JSON of each rule, by name
}

func key(parts ...string) string { return strings.ToLower(strings.Join(parts, "/")) }

func newFakeAzure(t *testing.T) *fakeAzure {
	return &fakeAzure{
		t:       t,
		vms:     map[string]*fakeVM{},
		nics:    map[string]armnetwork.Interface{},
		subnets: map[string]armnetwork.Subnet{},
		pips:    map[string]armnetwork.PublicIPAddress{},
		nsgs:    map[string]*fakeNSG{},
		refuse:  map[string]bool{},
	}
}

func armID(rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", fakeSub, rg, typ, name)
}

// client returns a Client whose SDK clients talk to f.
func (f *fakeAzure) client() *Client {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: f.transport()}}
	return NewClient(&azfake.TokenCredential{}, opts, testLogger(f.t), now)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rule builds an inbound security rule; ports is one range spec
// ("22", "8000-9000", "*").
func rule(name string, priority int32, access armnetwork.SecurityRuleAccess, source, ports string, proto armnetwork.SecurityRuleProtocol) armnetwork.SecurityRule {
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

const (
	allow = armnetwork.SecurityRuleAccessAllow
	deny  = armnetwork.SecurityRuleAccessDeny
	tcp   = armnetwork.SecurityRuleProtocolTCP
	udp   = armnetwork.SecurityRuleProtocolUDP
	anyP  = armnetwork.SecurityRuleProtocolAsterisk
)

// addNSG creates an NSG holding rules and returns its id.
func (f *fakeAzure) addNSG(rg, name string, rules ...armnetwork.SecurityRule) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := armID(rg, "Microsoft.Network/networkSecurityGroups", name)
	n := &fakeNSG{id: id, name: name, rules: map[string][]byte{}}
	for _, r := range rules {
		f.store(n, *r.Name, r)
	}
	f.nsgs[key(rg, name)] = n
	return id
}

// addRule adds (or replaces) a rule directly, as an operator would.
func (f *fakeAzure) addRule(nsgID string, r armnetwork.SecurityRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store(f.nsgByID(nsgID), *r.Name, r)
}

func (f *fakeAzure) nsgByID(id string) *fakeNSG {
	for _, n := range f.nsgs {
		if strings.EqualFold(n.id, id) {
			return n
		}
	}
	f.t.Fatalf("no NSG %s", id)
	return nil
}

func (f *fakeAzure) store(n *fakeNSG, name string, r armnetwork.SecurityRule) armnetwork.SecurityRule {
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
		f.t.Fatalf("marshal rule: %v", err)
	}
	n.rules[name] = b
	return r
}

func (f *fakeAzure) addSubnet(rg, vnet, name, nsgID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := armID(rg, "Microsoft.Network/virtualNetworks", vnet+"/subnets/"+name)
	s := armnetwork.Subnet{ID: to.Ptr(id), Name: to.Ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/24")}}
	if nsgID != "" {
		s.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(nsgID)}
	}
	f.subnets[key(rg, vnet, name)] = s
	return id
}

type vmSpec struct {
	rg, name string
	os       armcompute.OperatingSystemTypes
	power    string // running, stopped, deallocated, ...
	ip       string
	publicIP string
	nicNSG   string // NSG id
	subnet   string // subnet id
}

// addVM creates a VM with one NIC and returns the VM's id.
func (f *fakeAzure) addVM(s vmSpec) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.os == "" {
		s.os = armcompute.OperatingSystemTypesLinux
	}
	if s.power == "" {
		s.power = "running"
	}
	nicName := s.name + "-nic"
	nicID := armID(s.rg, "Microsoft.Network/networkInterfaces", nicName)
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{
		Primary:          to.Ptr(true),
		PrivateIPAddress: to.Ptr(s.ip),
	}
	if s.subnet != "" {
		ipc.Subnet = &armnetwork.Subnet{ID: to.Ptr(s.subnet)}
	}
	if s.publicIP != "" {
		pipName := s.name + "-ip"
		pipID := armID(s.rg, "Microsoft.Network/publicIPAddresses", pipName)
		f.pips[key(s.rg, pipName)] = armnetwork.PublicIPAddress{ID: to.Ptr(pipID), Name: to.Ptr(pipName),
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{IPAddress: to.Ptr(s.publicIP)}}
		ipc.PublicIPAddress = &armnetwork.PublicIPAddress{ID: to.Ptr(pipID)}
	}
	nic := armnetwork.Interface{ID: to.Ptr(nicID), Name: to.Ptr(nicName), Location: to.Ptr(fakeLocation),
		Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{
				{Name: to.Ptr("ipconfig1"), Properties: ipc},
			},
		}}
	if s.nicNSG != "" {
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(s.nicNSG)}
	}
	f.nics[key(s.rg, nicName)] = nic

	id := armID(s.rg, "Microsoft.Compute/virtualMachines", s.name)
	f.vms[key(s.rg, s.name)] = &fakeVM{power: s.power, computer: s.name + "-host", vm: armcompute.VirtualMachine{
		ID: to.Ptr(id), Name: to.Ptr(s.name), Location: to.Ptr(fakeLocation),
		Type: to.Ptr("Microsoft.Compute/virtualMachines"),
		Properties: &armcompute.VirtualMachineProperties{
			StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{OSType: to.Ptr(s.os)}},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{
				{ID: to.Ptr(nicID), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(true)}},
			}},
		},
	}}
	return id
}

func (f *fakeAzure) deleteVM(rg, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, key(rg, name))
	delete(f.nics, key(rg, name+"-nic"))
}

// writeCount returns how many rule writes (PUT or DELETE) Azure got.
func (f *fakeAzure) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// rules returns the stored JSON of the NSG's rules whose name ajarOwned
// selects (true: ajar's, false: everyone else's).
func (f *fakeAzure) rules(nsgID string, ajarOwned bool) map[string][]byte {
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

// rule returns one stored rule, decoded.
func (f *fakeAzure) rule(nsgID, name string) (armnetwork.SecurityRule, bool) {
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

func (f *fakeAzure) decoded(n *fakeNSG) []*armnetwork.SecurityRule {
	names := make([]string, 0, len(n.rules))
	for name := range n.rules {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]*armnetwork.SecurityRule, 0, len(names))
	for _, name := range names {
		var r armnetwork.SecurityRule
		if err := json.Unmarshal(n.rules[name], &r); err != nil {
			f.t.Fatalf("unmarshal rule: %v", err)
		}
		out = append(out, &r)
	}
	return out
}

// defaultRules are Azure's inbound default rules.
func defaultRules() []*armnetwork.SecurityRule {
	mk := func(name string, prio int32, access armnetwork.SecurityRuleAccess, src, dst string) *armnetwork.SecurityRule {
		r := rule(name, prio, access, src, "*", anyP)
		r.Properties.DestinationAddressPrefix = to.Ptr(dst)
		r.Properties.Description = nil
		return &r
	}
	return []*armnetwork.SecurityRule{
		mk("AllowVnetInBound", 65000, allow, "VirtualNetwork", "VirtualNetwork"),
		mk("AllowAzureLoadBalancerInBound", 65001, allow, "AzureLoadBalancer", "*"),
		mk("DenyAllInBound", 65500, deny, "*", "*"),
	}
}

// --- fake servers -------------------------------------------------------

func notFound[T any](what string) (azfake.Responder[T], azfake.ErrorResponder) {
	var errResp azfake.ErrorResponder
	errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
	return azfake.Responder[T]{}, errResp
}

func refused[T any]() (azfake.Responder[T], azfake.ErrorResponder) {
	var errResp azfake.ErrorResponder
	errResp.SetResponseError(http.StatusForbidden, "AuthorizationFailed")
	return azfake.Responder[T]{}, errResp
}

func ok[T any](v T) (azfake.Responder[T], azfake.ErrorResponder) {
	var resp azfake.Responder[T]
	resp.SetResponse(http.StatusOK, v, nil)
	return resp, azfake.ErrorResponder{}
}

func (f *fakeAzure) transport() policy.Transporter {
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

func (f *fakeAzure) getVM(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientGetOptions) (azfake.Responder[vmGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["VirtualMachinesClient.Get "+name] {
		return refused[vmGet]()
	}
	v, found := f.vms[key(rg, name)]
	if !found {
		return notFound[vmGet]("vm")
	}
	return ok(vmGet{VirtualMachine: v.vm})
}

func (f *fakeAzure) instanceView(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientInstanceViewOptions) (azfake.Responder[vmView], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["VirtualMachinesClient.InstanceView "+name] {
		return refused[vmView]()
	}
	v, found := f.vms[key(rg, name)]
	if !found {
		return notFound[vmView]("vm")
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
func (f *fakeAzure) vmPages(rg string) [][]*armcompute.VirtualMachine {
	f.mu.Lock()
	defer f.mu.Unlock()
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

func (f *fakeAzure) listVMs(rg string, _ *armcompute.VirtualMachinesClientListOptions) azfake.PagerResponder[vmList] {
	var resp azfake.PagerResponder[vmList]
	f.mu.Lock()
	refuse := f.refuse["VirtualMachinesClient.NewListPager "+rg]
	f.mu.Unlock()
	if refuse {
		resp.AddResponseError(http.StatusForbidden, "AuthorizationFailed")
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

func (f *fakeAzure) listAllVMs(_ *armcompute.VirtualMachinesClientListAllOptions) azfake.PagerResponder[vmAll] {
	var resp azfake.PagerResponder[vmAll]
	pages := f.vmPages("")
	if len(pages) == 0 {
		resp.AddPage(http.StatusOK, vmAll{}, nil)
	}
	for _, p := range pages {
		resp.AddPage(http.StatusOK, vmAll{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: p}}, nil)
	}
	return resp
}

func (f *fakeAzure) getNIC(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (azfake.Responder[nicGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["InterfacesClient.Get "+name] {
		return refused[nicGet]()
	}
	nic, found := f.nics[key(rg, name)]
	if !found {
		return notFound[nicGet]("nic")
	}
	return ok(nicGet{Interface: nic})
}

func (f *fakeAzure) getSubnet(_ context.Context, rg, vnet, name string, _ *armnetwork.SubnetsClientGetOptions) (azfake.Responder[snGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["SubnetsClient.Get "+name] {
		return refused[snGet]()
	}
	s, found := f.subnets[key(rg, vnet, name)]
	if !found {
		return notFound[snGet]("subnet")
	}
	return ok(snGet{Subnet: s})
}

func (f *fakeAzure) getPublicIP(_ context.Context, rg, name string, _ *armnetwork.PublicIPAddressesClientGetOptions) (azfake.Responder[pipGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["PublicIPAddressesClient.Get "+name] {
		return refused[pipGet]()
	}
	p, found := f.pips[key(rg, name)]
	if !found {
		return notFound[pipGet]("public ip")
	}
	return ok(pipGet{PublicIPAddress: p})
}

func (f *fakeAzure) getNSG(_ context.Context, rg, name string, _ *armnetwork.SecurityGroupsClientGetOptions) (azfake.Responder[nsgGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse["SecurityGroupsClient.Get "+name] {
		return refused[nsgGet]()
	}
	n, found := f.nsgs[key(rg, name)]
	if !found {
		return notFound[nsgGet]("nsg")
	}
	return ok(nsgGet{SecurityGroup: armnetwork.SecurityGroup{
		ID: to.Ptr(n.id), Name: to.Ptr(n.name), Location: to.Ptr(fakeLocation),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{
			SecurityRules:        f.decoded(n),
			DefaultSecurityRules: defaultRules(),
		},
	}})
}

func (f *fakeAzure) getRule(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientGetOptions) (azfake.Responder[ruleGet], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, found := f.nsgs[key(rg, nsg)]
	if !found || n.rules[name] == nil {
		return notFound[ruleGet]("rule")
	}
	var r armnetwork.SecurityRule
	if err := json.Unmarshal(n.rules[name], &r); err != nil {
		f.t.Errorf("unmarshal rule: %v", err)
	}
	return ok(ruleGet{SecurityRule: r})
}

// putRule validates a rule as Azure does (priority range, required fields,
// one rule per priority and direction), stores it and returns it.
func (f *fakeAzure) putRule(_ context.Context, rg, nsg, name string, r armnetwork.SecurityRule, _ *armnetwork.SecurityRulesClientBeginCreateOrUpdateOptions) (azfake.PollerResponder[rulePut], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errResp azfake.ErrorResponder
	f.writes++
	if f.refuse["SecurityRulesClient.BeginCreateOrUpdate "+name] {
		errResp.SetResponseError(http.StatusForbidden, "AuthorizationFailed")
		return azfake.PollerResponder[rulePut]{}, errResp
	}
	n, found := f.nsgs[key(rg, nsg)]
	if !found {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return azfake.PollerResponder[rulePut]{}, errResp
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
		errResp.SetResponseError(http.StatusBadRequest, "InvalidRequestFormat")
		return azfake.PollerResponder[rulePut]{}, errResp
	}
	if *p.Priority < 100 || *p.Priority > 4096 {
		errResp.SetResponseError(http.StatusBadRequest, "SecurityRuleInvalidPriority")
		return azfake.PollerResponder[rulePut]{}, errResp
	}
	for other, b := range n.rules {
		var o armnetwork.SecurityRule
		if err := json.Unmarshal(b, &o); err != nil {
			f.t.Errorf("unmarshal rule: %v", err)
		}
		if other != name && *o.Properties.Priority == *p.Priority && *o.Properties.Direction == *p.Direction {
			errResp.SetResponseError(http.StatusBadRequest, "SecurityRuleConflict")
			return azfake.PollerResponder[rulePut]{}, errResp
		}
	}
	status := http.StatusCreated
	if n.rules[name] != nil {
		status = http.StatusOK
	}
	stored := f.store(n, name, r)
	var resp azfake.PollerResponder[rulePut]
	resp.AddNonTerminalResponse(http.StatusCreated, nil)
	resp.SetTerminalResponse(status, rulePut{SecurityRule: stored}, nil)
	return resp, errResp
}

func (f *fakeAzure) deleteRule(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientBeginDeleteOptions) (azfake.PollerResponder[ruleDel], azfake.ErrorResponder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errResp azfake.ErrorResponder
	f.writes++
	if f.refuse["SecurityRulesClient.BeginDelete "+name] {
		errResp.SetResponseError(http.StatusForbidden, "AuthorizationFailed")
		return azfake.PollerResponder[ruleDel]{}, errResp
	}
	var resp azfake.PollerResponder[ruleDel]
	n, found := f.nsgs[key(rg, nsg)]
	if !found || n.rules[name] == nil {
		resp.SetTerminalResponse(http.StatusNoContent, ruleDel{}, nil)
		return resp, errResp
	}
	delete(n.rules, name)
	resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	resp.SetTerminalResponse(http.StatusOK, ruleDel{}, nil)
	return resp, errResp
}

// --- how Azure evaluates inbound traffic --------------------------------

// reachable reports whether a new connection from src to port/proto on the
// VM vmID passes its subnet's NSG and then its NIC's NSG, each evaluated as
// Azure does: inbound rules by ascending priority, the first match decides,
// then the default rules.
func (f *fakeAzure) reachable(t *testing.T, vmID string, src netip.Addr, port int, proto string) bool {
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
		if !evaluate(append(rules, defaultRules()...), src, dst, port, proto) {
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
		if *p.Protocol != anyP && !strings.EqualFold(string(*p.Protocol), proto) {
			continue
		}
		if !matchAddr(p.SourceAddressPrefix, p.SourceAddressPrefixes, src) ||
			!matchAddr(p.DestinationAddressPrefix, p.DestinationAddressPrefixes, dst) ||
			!matchPort(p.DestinationPortRange, p.DestinationPortRanges, port) {
			continue
		}
		return *p.Access == allow
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
			if fakeVNet.Contains(a) {
				return true
			}
		case "Internet":
			if !fakeVNet.Contains(a) {
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
