package azurensg

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/azurensg/azurefake"
	"github.com/ajarhq/ajar/internal/enforce/enforcetest"
	"github.com/ajarhq/ajar/internal/jit"
)

func newEnforcer(f *fakeAzure) *Enforcer {
	e := NewEnforcer(f.client(), testLogger(f.t))
	e.poll = time.Millisecond // the fake's create and delete take one poll
	return e
}

func azureVM(name, group, armID, ip string) jit.VM {
	return jit.VM{ID: "vm-" + name, Name: name, Group: group, Backend: jit.BackendAzure, ExternalID: armID, Addresses: []string{ip}}
}

func TestEnforcerSuite(t *testing.T) {
	layouts := []struct {
		name string
		// setUp returns the VM's id, the rules being in the NSG(s) it made.
		setUp func(f *fakeAzure) string
	}{
		{"NIC NSG", func(f *fakeAzure) string {
			nsg := f.AddNSG("rg-app", "web-nsg",
				rule("allow-app-from-anywhere", 1000, allow, "*", "8000-9000", anyP),
				rule("deny-known-bad-host", 990, deny, "192.0.2.66/32", "*", anyP),
				rule("allow-metrics", 999, allow, "10.9.0.0/16", "9100", tcp),
				rule("allow-app-from-office", 998, allow, "198.51.100.0/24", "8443", tcp),
			)
			sub := f.AddSubnet("rg-app", "vnet", "apps", "")
			return f.AddVM(vmSpec{ResourceGroup: "rg-app", Name: "web1", IP: "10.0.1.4", NICNSG: nsg, Subnet: sub})
		}},
		{"NIC and subnet NSG", func(f *fakeAzure) string {
			nicNSG := f.AddNSG("rg-app", "web-nsg", rule("allow-app", 1000, allow, "Internet", "8000-9000", anyP))
			subnetNSG := f.AddNSG("rg-net", "apps-nsg",
				rule("allow-all-in", 4096, allow, "*", "*", anyP),
				rule("allow-ssh", 4095, allow, "*", "22", tcp),
			)
			sub := f.AddSubnet("rg-net", "vnet", "apps", subnetNSG)
			return f.AddVM(vmSpec{ResourceGroup: "rg-app", Name: "web1", IP: "10.0.1.4", NICNSG: nicNSG, Subnet: sub})
		}},
		{"subnet NSG", func(f *fakeAzure) string {
			subnetNSG := f.AddNSG("rg-net", "apps-nsg", rule("allow-app", 200, allow, "0.0.0.0/0", "*", anyP))
			sub := f.AddSubnet("rg-net", "vnet", "apps", subnetNSG)
			return f.AddVM(vmSpec{ResourceGroup: "rg-app", Name: "web1", IP: "10.0.1.4", Subnet: sub})
		}},
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			enforcetest.Run(t, func(t *testing.T) enforcetest.Harness {
				f := newFakeAzure(t)
				vmID := l.setUp(f)
				return enforcetest.Harness{
					Enforcer:  newEnforcer(f),
					VM:        azureVM("web1", "rg-app", vmID, "10.0.1.4"),
					SourceA:   netip.MustParseAddr("203.0.113.10"),
					SourceB:   netip.MustParseAddr("198.51.100.20"),
					SourceNet: netip.MustParsePrefix("203.0.113.0/24"),
					Port:      8080,
					OtherPort: 8443,
					Reachable: func(t *testing.T, src netip.Addr, port int, proto string) bool {
						return f.Reachable(t, vmID, src, port, proto)
					},
				}
			})
		})
	}
}

func lock(ports ...int) []jit.PortLock {
	var l []jit.PortLock
	for _, p := range ports {
		l = append(l, jit.PortLock{Port: p, Protocol: jit.ProtoAny})
	}
	return l
}

func grantRule(id string, port int, proto, source string) jit.GrantRule {
	return jit.GrantRule{ID: id, Port: port, Protocol: proto, Source: source,
		EndTime: time.Date(2026, 1, 2, 6, 0, 0, 0, time.UTC), RemainingSeconds: 3600}
}

func state(l []jit.PortLock, grants ...jit.GrantRule) jit.DesiredState {
	return jit.DesiredState{VMID: "vm", Lock: l, Grants: grants}
}

func priorityOf(t *testing.T, f *fakeAzure, nsg, name string) int32 {
	t.Helper()
	r, found := f.GetRule(nsg, name)
	if !found {
		t.Fatalf("no rule %s; ajar's rules: %v", name, keys(f.Rules(nsg, true)))
	}
	return *r.Properties.Priority
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sameRules(t *testing.T, step string, before, after map[string][]byte) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("%s: rules %v became %v", step, keys(before), keys(after))
	}
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Fatalf("%s: rule %s changed:\n%s\n%s", step, name, b, after[name])
		}
	}
}

// The rules of others, at awkward priorities and in both directions, stay
// byte-identical through every Apply and Remove, and ajar's own rules are
// named, described and placed as documented.
func TestForeignRulesUntouched(t *testing.T) {
	f := newFakeAzure(t)
	outbound := rule("deny-out-smtp", 999, deny, "*", "25", tcp)
	outbound.Properties.Direction = to.Ptr(armnetwork.SecurityRuleDirectionOutbound)
	nsg := f.AddNSG("rg", "nsg",
		rule("deny-bad", 100, deny, "192.0.2.0/24", "*", anyP),
		rule("allow-lb-probe", 101, allow, "AzureLoadBalancer", "*", anyP),
		rule("allow-ssh-internet", 1000, allow, "Internet", "22", tcp),
		rule("allow-ssh-office", 998, allow, "198.51.100.0/24", "22", tcp),
		rule("allow-rdp", 997, allow, "*", "3389", tcp),
		rule("allow-everything", 4096, allow, "*", "*", anyP),
		outbound,
	)
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "db1", IP: "10.0.1.5", NICNSG: nsg})
	vm := azureVM("db1", "rg", vmID, "10.0.1.5")
	e := newEnforcer(f)
	ctx := context.Background()
	foreign := f.Rules(nsg, false)

	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7/32"))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	sameRules(t, "after apply", foreign, f.Rules(nsg, false))

	tag := vmTag(vmID)
	denyName, allowName := "ajar-deny-db1-"+tag, "ajar-allow-g1-"+tag
	// Ahead of allow-ssh-internet (1000), the first broad Allow of port 22
	// (the outbound rule at 999 is no obstacle); the grant right ahead of
	// it, past the taken 998 and 997.
	if p := priorityOf(t, f, nsg, denyName); p != 999 {
		t.Errorf("deny priority = %d, want 999", p)
	}
	if p := priorityOf(t, f, nsg, allowName); p != 996 {
		t.Errorf("allow priority = %d, want 996", p)
	}
	d, _ := f.GetRule(nsg, denyName)
	if got := *d.Properties.Description; !strings.Contains(got, "db1") || !strings.HasPrefix(got, "ajar") {
		t.Errorf("deny description = %q", got)
	}
	a, _ := f.GetRule(nsg, allowName)
	if got := *a.Properties.Description; !strings.Contains(got, "g1") || !strings.Contains(got, "db1") {
		t.Errorf("allow description = %q", got)
	}
	if got := *a.Properties.SourceAddressPrefix + " -> " + *a.Properties.DestinationAddressPrefix; got != "203.0.113.7/32 -> 10.0.1.5" {
		t.Errorf("allow = %s", got)
	}

	shadowed, err := e.Shadowed(ctx, vm)
	if err != nil {
		t.Fatalf("shadowed: %v", err)
	}
	want := []string{"nsg/allow-ssh-internet", "nsg/allow-everything"}
	if strings.Join(shadowed, " ") != strings.Join(want, " ") {
		t.Errorf("shadowed = %v, want %v", shadowed, want)
	}
	for _, c := range []struct {
		src  string
		port int
		want bool
	}{
		{"203.0.113.8", 22, false},  // the internet: locked
		{"203.0.113.7", 22, true},   // the grant
		{"198.51.100.9", 22, true},  // the office rule ahead of the lock stays in force
		{"192.0.2.5", 22, false},    // deny-bad still wins over everything
		{"203.0.113.8", 3389, true}, // not locked
	} {
		if got := f.Reachable(t, vmID, netip.MustParseAddr(c.src), c.port, jit.ProtoTCP); got != c.want {
			t.Errorf("%s -> %d reachable = %v, want %v", c.src, c.port, got, c.want)
		}
	}

	if err := e.Apply(ctx, vm, state(lock(22, 3389), grantRule("g2", 3389, jit.ProtoTCP, "203.0.113.7/32"))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	sameRules(t, "after second apply", foreign, f.Rules(nsg, false))
	if _, found := f.GetRule(nsg, allowName); found {
		t.Errorf("the ended grant's rule is still there")
	}
	// allow-rdp at 997 now lets the internet reach a locked port: the lock
	// moves ahead of it, to the priority the ended grant freed.
	if p := priorityOf(t, f, nsg, denyName); p != 996 {
		t.Errorf("deny priority = %d, want 996", p)
	}
	if p := priorityOf(t, f, nsg, "ajar-allow-g2-"+tag); p != 995 {
		t.Errorf("grant priority = %d, want 995", p)
	}

	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove: %v", err)
	}
	sameRules(t, "after remove", foreign, f.Rules(nsg, false))
	if left := f.Rules(nsg, true); len(left) != 0 {
		t.Errorf("ajar rules left after remove: %v", keys(left))
	}
}

func TestLockAheadOfBroadAllow(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg",
		rule("allow-ssh-internet", 150, allow, "Internet", "22", tcp),
		rule("taken", 148, deny, "192.0.2.1", "80", tcp),
		rule("allow-all", 3000, allow, "0.0.0.0/0", "*", anyP),
	)
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "jump", IP: "10.0.1.9", NICNSG: nsg})
	vm := azureVM("jump", "rg", vmID, "10.0.1.9")
	e := newEnforcer(f)
	ctx := context.Background()
	st := state(lock(22), grantRule("a", 22, jit.ProtoTCP, "203.0.113.1/32"), grantRule("b", 22, jit.ProtoTCP, "203.0.113.2/32"))
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tag := vmTag(vmID)
	for name, want := range map[string]int32{"ajar-deny-jump-" + tag: 149, "ajar-allow-a-" + tag: 147, "ajar-allow-b-" + tag: 146} {
		if got := priorityOf(t, f, nsg, name); got != want {
			t.Errorf("%s at %d, want %d", name, got, want)
		}
	}
	if f.Reachable(t, vmID, netip.MustParseAddr("203.0.113.3"), 22, jit.ProtoTCP) {
		t.Errorf("locked port reachable from the internet")
	}
	if !f.Reachable(t, vmID, netip.MustParseAddr("203.0.113.2"), 22, jit.ProtoTCP) {
		t.Errorf("grant b does not reach the port")
	}

	// Someone adds a broad allow ahead of the lock: the next Apply moves
	// the lock and the grants ahead of it, and leaves the rule alone.
	f.AddRule(nsg, rule("allow-ssh-new", 120, allow, "*", "20-23", anyP))
	foreign := f.Rules(nsg, false)
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply: %v", err)
	}
	sameRules(t, "after apply", foreign, f.Rules(nsg, false))
	d := priorityOf(t, f, nsg, "ajar-deny-jump-"+tag)
	if d != 119 {
		t.Errorf("deny at %d, want 119", d)
	}
	for _, g := range []string{"a", "b"} {
		if p := priorityOf(t, f, nsg, "ajar-allow-"+g+"-"+tag); p >= d {
			t.Errorf("grant %s at %d, not ahead of the deny at %d", g, p, d)
		}
	}
	if f.Reachable(t, vmID, netip.MustParseAddr("203.0.113.3"), 22, jit.ProtoTCP) {
		t.Errorf("locked port reachable from the internet")
	}
}

func TestNoFreePriority(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "tight-nsg",
		rule("first", 100, deny, "192.0.2.0/24", "*", anyP),
		rule("allow-ssh", 102, allow, "*", "22", tcp),
	)
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	vm := azureVM("vm1", "rg", vmID, "10.0.1.4")
	e := newEnforcer(f)
	ctx := context.Background()
	foreign := f.Rules(nsg, false)

	// 101 holds the lock, but then no room is left for a grant.
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil {
		t.Fatalf("apply the lock alone: %v", err)
	}
	writes := f.WriteCount()
	err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.1/32")))
	if jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("apply = %v, want a %s error", err, jit.EConflict)
	}
	msg := jit.ErrorMessage(err)
	for _, want := range []string{"no free priority", "tight-nsg", "allow-ssh"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if f.WriteCount() != writes {
		t.Errorf("a failed plan wrote %d times", f.WriteCount()-writes)
	}
	sameRules(t, "after failed apply", foreign, f.Rules(nsg, false))
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove: %v", err)
	}
	sameRules(t, "after remove", foreign, f.Rules(nsg, false))
}

func TestApplyIsIdempotent(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	vm := azureVM("vm1", "rg", vmID, "10.0.1.4")
	e := newEnforcer(f)
	ctx := context.Background()

	st := state(lock(22, 3389), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.1/32"), grantRule("g2", 3389, jit.ProtoAny, "203.0.113.0/24"))
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := f.WriteCount(); got != 3 {
		t.Errorf("first apply wrote %d times, want 3", got)
	}
	before := f.Rules(nsg, true)
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply again: %v", err)
	}
	if got := f.WriteCount(); got != 3 {
		t.Errorf("second apply wrote %d times, want none", got-3)
	}
	sameRules(t, "after the same apply", before, f.Rules(nsg, true))

	st.Grants = append(st.Grants, grantRule("g3", 22, jit.ProtoUDP, "203.0.113.9/32"))
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply a new grant: %v", err)
	}
	if got := f.WriteCount(); got != 4 {
		t.Errorf("adding a grant wrote %d times, want 1", got-3)
	}
	if err := e.Apply(ctx, vm, state(nil)); err != nil {
		t.Fatalf("apply without lock: %v", err)
	}
	if left := f.Rules(nsg, true); len(left) != 0 {
		t.Errorf("rules left without a lock: %v", keys(left))
	}
	writes := f.WriteCount()
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if f.WriteCount() != writes {
		t.Errorf("remove with nothing to remove wrote")
	}
}

// A lock mixing protocols gets one Deny rule per protocol so that it locks
// no more than asked.
func TestMixedProtocolLock(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "dns", IP: "10.0.1.4", NICNSG: nsg})
	vm := azureVM("dns", "rg", vmID, "10.0.1.4")
	e := newEnforcer(f)
	l := []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}, {Port: 53, Protocol: jit.ProtoUDP}, {Port: 80, Protocol: jit.ProtoTCP}}
	if err := e.Apply(context.Background(), vm, state(l)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tag := vmTag(vmID)
	for _, name := range []string{"ajar-deny-dns-tcp-" + tag, "ajar-deny-dns-udp-" + tag} {
		priorityOf(t, f, nsg, name)
	}
	src := netip.MustParseAddr("203.0.113.1")
	for _, c := range []struct {
		port  int
		proto string
		want  bool
	}{{22, "TCP", false}, {22, "UDP", true}, {53, "UDP", false}, {53, "TCP", true}, {80, "TCP", false}, {443, "TCP", true}} {
		if got := f.Reachable(t, vmID, src, c.port, c.proto); got != c.want {
			t.Errorf("%d/%s reachable = %v, want %v", c.port, c.proto, got, c.want)
		}
	}
}

func TestNoNSG(t *testing.T) {
	f := newFakeAzure(t)
	sub := f.AddSubnet("rg", "vnet", "bare", "")
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", Subnet: sub})
	err := newEnforcer(f).Apply(context.Background(), azureVM("vm1", "rg", vmID, "10.0.1.4"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EConflict || jit.ErrorMessage(err) != ReasonNoNSG {
		t.Fatalf("apply = %v, want %s %q", err, jit.EConflict, ReasonNoNSG)
	}
}

func TestNotAzure(t *testing.T) {
	f := newFakeAzure(t)
	vm := jit.VM{Name: "h", Backend: jit.BackendAgent}
	if err := newEnforcer(f).Apply(context.Background(), vm, state(lock(22))); jit.ErrorCode(err) != jit.EInvalid {
		t.Fatalf("apply = %v, want %s", err, jit.EInvalid)
	}
}

// Two VMs share an NSG: concurrent Applies do not collide, and each VM's
// Apply and Remove leave the other's rules alone.
func TestVMsSharingAnNSG(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "shared", rule("allow-all", 2000, allow, "*", "*", anyP))
	var vms []jit.VM
	for i, name := range []string{"a1", "a2", "a3", "a4"} {
		ip := netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i)}).String()
		vms = append(vms, azureVM(name, "rg", f.AddVM(vmSpec{ResourceGroup: "rg", Name: name, IP: ip, NICNSG: nsg}), ip))
	}
	e := newEnforcer(f)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, len(vms))
	for i, vm := range vms {
		wg.Go(func() {
			errs[i] = e.Apply(ctx, vm, state(lock(22), grantRule("g-"+vm.Name, 22, jit.ProtoTCP, "203.0.113.1/32")))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("apply %s: %v", vms[i].Name, err)
		}
	}
	if n := len(f.Rules(nsg, true)); n != 8 {
		t.Fatalf("%d ajar rules, want 8", n)
	}
	src := netip.MustParseAddr("203.0.113.1")
	for _, vm := range vms {
		if !f.Reachable(t, vm.ExternalID, src, 22, jit.ProtoTCP) {
			t.Errorf("%s: grant does not reach", vm.Name)
		}
		if f.Reachable(t, vm.ExternalID, netip.MustParseAddr("203.0.113.2"), 22, jit.ProtoTCP) {
			t.Errorf("%s: lock does not hold", vm.Name)
		}
	}
	others := f.Rules(nsg, true)
	if err := e.Remove(ctx, vms[0]); err != nil {
		t.Fatalf("remove: %v", err)
	}
	for name := range others {
		if strings.HasSuffix(name, vmTag(vms[0].ExternalID)) {
			delete(others, name)
		}
	}
	sameRules(t, "after removing a1", others, f.Rules(nsg, true))
}

// Someone else takes the priority ajar planned to use between its read and
// its write: Azure refuses with SecurityRuleConflict, and Apply reads again
// and plans around it.
func TestPriorityTakenMeanwhile(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	raced := false
	f.BeforePut(func(n *azurefake.NSG, name string, r armnetwork.SecurityRule) {
		if raced {
			return
		}
		raced = true
		n.Put(rule("someone-elses", *r.Properties.Priority, deny, "192.0.2.1", "25", tcp))
	})
	e := newEnforcer(f)
	if err := e.Apply(context.Background(), azureVM("vm1", "rg", vmID, "10.0.1.4"), state(lock(22))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if p := priorityOf(t, f, nsg, "ajar-deny-vm1-"+vmTag(vmID)); p != 998 {
		t.Errorf("deny at %d, want 998 (999 was taken)", p)
	}
	if _, found := f.GetRule(nsg, "someone-elses"); !found {
		t.Errorf("the other rule is gone")
	}
}

// A VM deleted from Azure is cleaned through the NSGs its labels name; a
// VM whose NIC moved to another NSG loses its rules in the old one.
func TestRemoveThroughLabels(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	vm := azureVM("vm1", "rg", vmID, "10.0.1.4")
	vm.Labels = map[string]string{LabelNSG: nsg + "," + armID("rg", "Microsoft.Network/networkSecurityGroups", "deleted-nsg")}
	e := newEnforcer(f)
	ctx := context.Background()
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g", 22, jit.ProtoTCP, "203.0.113.1/32"))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	f.DeleteVM("rg", "vm1")
	if err := e.Apply(ctx, vm, state(lock(22))); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("apply to a deleted VM = %v, want %s", err, jit.ENotFound)
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if left := f.Rules(nsg, true); len(left) != 0 {
		t.Errorf("rules left: %v", keys(left))
	}

	// The NIC moves from old-nsg to nsg; Apply cleans old-nsg.
	old := f.AddNSG("rg", "old-nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID = f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm2", IP: "10.0.1.5", NICNSG: old})
	vm = azureVM("vm2", "rg", vmID, "10.0.1.5")
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	vm.Labels = map[string]string{LabelNSG: old}
	f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm2", IP: "10.0.1.5", NICNSG: nsg})
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if left := f.Rules(old, true); len(left) != 0 {
		t.Errorf("rules left in the old NSG: %v", keys(left))
	}
	if n := len(f.Rules(nsg, true)); n != 1 {
		t.Errorf("%d ajar rules in the new NSG, want 1", n)
	}
}

func TestForbiddenWrite(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	f.Refuse("SecurityRulesClient.BeginCreateOrUpdate ajar-deny-vm1-" + vmTag(vmID))
	err := newEnforcer(f).Apply(context.Background(), azureVM("vm1", "rg", vmID, "10.0.1.4"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EForbidden || !strings.Contains(jit.ErrorMessage(err), "lacks permission") {
		t.Fatalf("apply = %v, want a %s error", err, jit.EForbidden)
	}
}

func TestRuleName(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, c := range []struct{ id, want string }{
		{"g1", "ajar-allow-g1-0123abcd"},
		{"5f0c-11aa", "ajar-allow-5f0c-11aa-0123abcd"},
		{"a/b c", "ajar-allow-a-b-c-" + hash8("a/b c") + "-0123abcd"},
		{long, "ajar-allow-" + long[:51] + "-" + hash8(long) + "-0123abcd"},
	} {
		got := ruleName(prefixAllow, c.id, "0123abcd")
		if got != c.want {
			t.Errorf("ruleName(%q) = %q, want %q", c.id, got, c.want)
		}
		if len(got) > maxNameLen {
			t.Errorf("ruleName(%q) is %d long", c.id, len(got))
		}
		if !ownedBy(got, "0123abcd") || ownedBy(got, "0123abce") {
			t.Errorf("ownedBy(%q) is wrong", got)
		}
	}
	if ownedBy("allow-ssh-0123abcd", "0123abcd") {
		t.Errorf("a rule without ajar's prefix counts as ajar's")
	}
}

// Azure may hand back a single address without its /32; that is still the
// rule ajar wrote, and a grant from another address family than the VM's
// (which no NSG rule can hold) is left out rather than failing the lock.
func TestApplyToleratesAzureSpelling(t *testing.T) {
	f := newFakeAzure(t)
	nsg := f.AddNSG("rg", "nsg", rule("allow-all", 1000, allow, "*", "*", anyP))
	vmID := f.AddVM(vmSpec{ResourceGroup: "rg", Name: "vm1", IP: "10.0.1.4", NICNSG: nsg})
	vm := azureVM("vm1", "rg", vmID, "10.0.1.4")
	e := newEnforcer(f)
	ctx := context.Background()
	st := state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.1/32"), grantRule("g6", 22, jit.ProtoTCP, "2001:db8::1/128"))
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if n := len(f.Rules(nsg, true)); n != 2 {
		t.Fatalf("%d ajar rules, want 2 (the IPv6 grant left out)", n)
	}
	name := "ajar-allow-g1-" + vmTag(vmID)
	r, _ := f.GetRule(nsg, name)
	r.Properties.SourceAddressPrefix = to.Ptr("203.0.113.1")
	f.AddRule(nsg, r)
	writes := f.WriteCount()
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if f.WriteCount() != writes {
		t.Errorf("apply rewrote a rule Azure merely spelled differently")
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 100) // two bytes each
	got := clip(long)
	if len(got) > maxDescLen || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("clip = %q (%d bytes)", got, len(got))
	}
	if clip("short") != "short" {
		t.Errorf("clip changed a short description")
	}
}
