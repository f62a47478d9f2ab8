package cloudsync

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/azurensg"
	"github.com/ajarhq/ajar/internal/azurensg/azurefake"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

const (
	allow = azurefake.Allow
	deny  = azurefake.Deny
	tcp   = azurefake.TCP
	anyP  = azurefake.AnyProtocol
)

var rule = azurefake.Rule

// discoveryWorld puts one VM per case discovery tells apart into f.
func discoveryWorld(f *azurefake.Azure) map[string]string {
	ids := map[string]string{}
	plain := f.AddSubnet("App-RG", "vnet", "plain", "")
	open := f.AddNSG("App-RG", "open-nsg", rule("allow-ssh-internet", 300, allow, "Internet", "22", tcp))
	closed := f.AddNSG("App-RG", "closed-nsg", rule("allow-rdp-office", 300, allow, "198.51.100.0/24", "3389", tcp))
	ids["web1"] = f.AddVM(azurefake.VMSpec{ResourceGroup: "App-RG", Name: "web1", IP: "10.0.1.4", PublicIP: "20.1.2.3", NICNSG: open, Subnet: plain})
	ids["win1"] = f.AddVM(azurefake.VMSpec{ResourceGroup: "App-RG", Name: "win1", OS: "Windows", IP: "10.0.1.5", NICNSG: closed, Subnet: plain})
	ids["bare"] = f.AddVM(azurefake.VMSpec{ResourceGroup: "App-RG", Name: "bare", IP: "10.0.1.6", Subnet: plain})
	ids["stopped"] = f.AddVM(azurefake.VMSpec{ResourceGroup: "ops", Name: "stopped", Power: "deallocated", IP: "10.0.2.4", NICNSG: open})
	ids["secret"] = f.AddVM(azurefake.VMSpec{ResourceGroup: "ops", Name: "secret", IP: "10.0.2.5", NICNSG: closed})
	f.Refuse("InterfacesClient.Get secret-nic")
	return ids
}

func TestDiscovery(t *testing.T) {
	w := newWorld(t)
	ids := discoveryWorld(w.f)

	sum, err := w.syncer.SyncNow(ctx())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if diff := cmp.Diff([]string{"app-rg/bare", "app-rg/web1", "app-rg/win1", "ops/secret", "ops/stopped"}, sum.Created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"app-rg", "ops"}, sum.GroupsCreated); diff != "" {
		t.Errorf("groups created (-want +got):\n%s", diff)
	}
	if sum.Discovered != 5 || sum.Unsupported != 3 || sum.Exposed != 2 || len(sum.Scopes) != 1 || sum.Scopes[0].Error != "" {
		t.Errorf("summary = %+v", sum)
	}

	type row struct{ Group, Backend, ExternalID, JIT, Health, Reason string }
	got := map[string]row{}
	vms, _, err := w.ctl.ListVMs(ctx(), admin, control.VMListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		got[v.Name] = row{v.Group, v.Backend, v.ExternalID, v.Classification.JIT, v.Classification.Health, v.Classification.Reason}
	}
	want := map[string]row{
		"web1":    {"app-rg", "azure", ids["web1"], jit.JITNotConfigured, jit.Unhealthy, "JIT recommended"},
		"win1":    {"app-rg", "azure", ids["win1"], jit.JITNotConfigured, jit.Healthy, ""},
		"bare":    {"app-rg", "azure", ids["bare"], jit.JITUnsupported, "", azurensg.ReasonNoNSG},
		"stopped": {"ops", "azure", ids["stopped"], jit.JITUnsupported, "", "VM is deallocated"},
		"secret":  {"ops", "azure", ids["secret"], jit.JITUnsupported, "", "ajar lacks permission to read network interface secret-nic (AuthorizationFailed)"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("VMs (-want +got):\n%s", diff)
	}
	web := w.vm("web1")
	if diff := cmp.Diff([]string{"10.0.1.4", "20.1.2.3"}, web.Addresses); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if web.Labels[azurensg.LabelResourceGroup] != "App-RG" || web.Labels[azurensg.LabelSubscription] != azurefake.Subscription {
		t.Errorf("labels = %v", web.Labels)
	}
	if got := jit.Recommend(web.VM); len(got) != 1 || got[0].Number != 22 {
		t.Errorf("recommended = %+v, want port 22", got)
	}
	if win := w.vm("win1"); win.OS != "windows" {
		t.Errorf("win1 OS = %q", win.OS)
	}
	creates := w.events("", jit.OpVMCreate)
	if len(creates) != 5 || creates[0].Actor != "system" {
		t.Errorf("vm.create events: %+v", creates)
	}

	// Re-discovery: the same VMs, nothing duplicated; changes taken in,
	// labels ajar's other parts set kept; a VM gone from Azure becomes
	// unsupported.
	err = w.db.Update(ctx(), func(tx store.Tx) error {
		vm := web.VM
		vm.Labels["azure.jitPolicy"] = "web-policy"
		return tx.UpdateVM(vm)
	})
	if err != nil {
		t.Fatal(err)
	}
	plain := azurefake.ID("App-RG", "Microsoft.Network/virtualNetworks", "vnet/subnets/plain")
	w.f.AddVM(azurefake.VMSpec{ResourceGroup: "App-RG", Name: "win1", OS: "Windows", IP: "10.0.1.50", Subnet: plain,
		NICNSG: azurefake.ID("App-RG", "Microsoft.Network/networkSecurityGroups", "closed-nsg")})
	w.f.SetPower("ops", "stopped", "running")
	w.f.DeleteVM("App-RG", "bare")
	sum, err = w.syncer.SyncNow(ctx())
	if err != nil {
		t.Fatalf("sync again: %v", err)
	}
	if len(sum.Created) != 0 || sum.Updated != 2 || sum.Unchanged != 2 || !slices.Equal(sum.Missing, []string{"app-rg/bare"}) {
		t.Errorf("second summary = %+v", sum)
	}
	vms, _, err = w.ctl.ListVMs(ctx(), admin, control.VMListFilter{})
	if err != nil || len(vms) != 5 {
		t.Fatalf("%d VMs after re-discovery (%v), want 5", len(vms), err)
	}
	if got := w.vm("win1").Addresses; !slices.Equal(got, []string{"10.0.1.50"}) {
		t.Errorf("win1 addresses = %v", got)
	}
	if got := w.vm("web1").Labels["azure.jitPolicy"]; got != "web-policy" {
		t.Errorf("a label discovery does not own was lost: %q", got)
	}
	if c := w.vm("stopped").Classification; c.JIT != jit.JITNotConfigured || c.Health != jit.Unhealthy {
		t.Errorf("started VM: %+v", c)
	}
	if c := w.vm("bare").Classification; c.JIT != jit.JITUnsupported || c.Reason != ReasonVanished {
		t.Errorf("VM gone from Azure: %+v", c)
	}
	if n := len(w.events("", jit.OpVMCreate)); n != 5 {
		t.Errorf("%d vm.create events after re-discovery, want 5", n)
	}
}

// A listing Azure refuses is reported and leaves the known VMs alone.
func TestDiscoveryRefused(t *testing.T) {
	w := newWorld(t)
	discoveryWorld(w.f)
	if _, err := w.syncer.SyncNow(ctx()); err != nil {
		t.Fatal(err)
	}
	w.f.Refuse("VirtualMachinesClient.NewListAllPager")
	sum, err := w.syncer.SyncNow(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Scopes) != 1 || !strings.Contains(sum.Scopes[0].Error, "lacks permission to list") || len(sum.Missing) != 0 {
		t.Errorf("summary = %+v", sum)
	}
	if c := w.vm("web1").Classification; c.JIT != jit.JITNotConfigured {
		t.Errorf("web1 after a refused listing: %+v", c)
	}
}

// jitWorld is one VM, web1, behind an NSG with rules of the operator's,
// one of which (allow-ssh-internet) the lock will shadow; web2 shares the
// NSG.
func jitWorld(w *world) (nsg string) {
	nsg = w.f.AddNSG("rg", "web-nsg",
		rule("deny-bad", 100, deny, "192.0.2.0/24", "*", anyP),
		rule("allow-ssh-internet", 1000, allow, "Internet", "22", tcp),
		rule("allow-https", 1010, allow, "*", "443", tcp),
	)
	w.f.AddVM(azurefake.VMSpec{ResourceGroup: "rg", Name: "web1", IP: "10.0.1.4", NICNSG: nsg})
	w.f.AddVM(azurefake.VMSpec{ResourceGroup: "rg", Name: "web2", IP: "10.0.1.5", NICNSG: nsg})
	return nsg
}

func (w *world) waitDiscovered(name string) jit.VMView {
	w.t.Helper()
	eventually(w.t, name+" is discovered", 10*time.Second, func() bool {
		vms, _, err := w.ctl.ListVMs(ctx(), admin, control.VMListFilter{Name: name})
		return err == nil && len(vms) == 1
	})
	return w.vm(name)
}

// The whole story against Azure, with no one but the Syncer and the
// expirer touching the NSG: enable JIT, request, expiry, disable.
func TestEnforcement(t *testing.T) {
	w := newWorld(t)
	nsg := jitWorld(w)
	foreign := w.f.Rules(nsg, false)
	w.start()
	web := w.waitDiscovered("web1")
	web2 := w.waitDiscovered("web2")
	webID := web.ExternalID

	w.enableJIT(web.ID, 22)
	w.enableJIT(web2.ID, 22)
	eventually(t, "the lock is in the NSG", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-web1-")) == 1 && len(w.ajarRules(nsg, "ajar-deny-web2-")) == 1
	})
	if w.f.Reachable(t, webID, me, 22, "TCP") {
		t.Errorf("port 22 open to me before any request")
	}
	if !w.f.Reachable(t, webID, me, 443, "TCP") {
		t.Errorf("port 443 locked too")
	}
	eventually(t, "the VM reports the shadowed rule", 5*time.Second, func() bool {
		return slices.Equal(control.ShadowedRules(w.vm("web1").VM), []string{"web-nsg/allow-ssh-internet"})
	})
	if evs := w.events(web.ID, jit.OpEnforceApply); len(evs) == 0 || evs[0].Actor != "system" {
		t.Errorf("enforcement.apply events: %+v", evs)
	}

	g := w.request(web.ID, 22, "PT2S")
	eventually(t, "the grant's allow rule is in the NSG", 5*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-allow-"+g.ID)) == 1
	})
	if !w.f.Reachable(t, webID, me, 22, "TCP") {
		t.Errorf("port 22 closed to me under the grant")
	}
	if w.f.Reachable(t, webID, other, 22, "TCP") {
		t.Errorf("port 22 open to someone else under my grant")
	}

	// Expiry: no one calls anything.
	eventually(t, "the expired grant's allow rule is gone", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-allow-")) == 0
	})
	if w.f.Reachable(t, webID, me, 22, "TCP") {
		t.Errorf("port 22 still open after expiry")
	}
	grants, _, err := w.ctl.ListGrants(ctx(), admin, control.GrantListFilter{VMID: web.ID})
	if err != nil || len(grants) != 1 || grants[0].Status != jit.GrantExpired {
		t.Errorf("grants = %+v, %v; want one expired", grants, err)
	}

	// Disable JIT on web1: its rules go, web2's and the operator's stay.
	web2Rules := w.ajarRules(nsg, "ajar-deny-web2-")
	if err := w.ctl.DeletePolicy(ctx(), admin, web.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web1's rules are gone", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-web1-")) == 0
	})
	if !w.f.Reachable(t, webID, me, 22, "TCP") {
		t.Errorf("port 22 still locked after disabling JIT")
	}
	if got := w.ajarRules(nsg, "ajar-"); !slices.Equal(got, web2Rules) {
		t.Errorf("ajar's rules after disabling web1: %v, want %v", got, web2Rules)
	}
	sameRules(t, foreign, w.f.Rules(nsg, false))
	eventually(t, "the removal is logged", 5*time.Second, func() bool {
		for _, e := range w.events(web.ID, jit.OpEnforceApply) {
			if bytes.Contains(e.Details, []byte(`"removed":true`)) {
				return true
			}
		}
		return false
	})
	if got := control.ShadowedRules(w.vm("web1").VM); len(got) != 0 {
		t.Errorf("shadowed rules of a VM without JIT: %v", got)
	}
}

func sameRules(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("the operator's rules changed: %d became %d", len(before), len(after))
	}
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("the operator's rule %s changed:\n%s\n%s", name, b, after[name])
		}
	}
}

// ajard stops with grants active; while it is down one ends by itself and
// one is revoked. Once it is back, their allow rules go and the rule of
// the grant still active stays.
func TestRestartRemovesStaleAllowRules(t *testing.T) {
	w := newWorld(t)
	nsg := jitWorld(w)
	w.start()
	web := w.waitDiscovered("web1")
	w.enableJIT(web.ID, 22, 3389)
	short := w.request(web.ID, 22, "PT2S")
	revoked := w.request(web.ID, 3389, "PT1H")
	eventually(t, "both allow rules are in the NSG", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-allow-"+short.ID)) == 1 && len(w.ajarRules(nsg, "ajar-allow-"+revoked.ID)) == 1
	})

	w.stop()
	if _, err := w.ctl.Revoke(ctx(), admin, revoked.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(short.EndTime) + 100*time.Millisecond)
	w.restart()
	kept := w.request(web.ID, 3389, "PT1H") // before the Syncer runs: the change is not seen
	if got := w.ajarRules(nsg, "ajar-allow-"); len(got) != 2 {
		t.Fatalf("before the restart: ajar allow rules %v, want the two stale ones", got)
	}
	w.start()
	eventually(t, "the stale allow rules are gone", 10*time.Second, func() bool {
		got := w.ajarRules(nsg, "ajar-allow-")
		return len(got) == 1 && strings.HasPrefix(got[0], "ajar-allow-"+kept.ID)
	})
	if w.f.Reachable(t, web.ExternalID, me, 22, "TCP") {
		t.Errorf("port 22 open after the grant ended")
	}
}

// Azure fails a few writes: the Syncer retries until the lock holds, and
// the log says it failed and then recovered.
func TestAzureFailureRetried(t *testing.T) {
	w := newWorld(t)
	nsg := jitWorld(w)
	w.start()
	web := w.waitDiscovered("web1")
	w.f.Fail("SecurityRulesClient.BeginCreateOrUpdate", 3)
	w.enableJIT(web.ID, 22)
	eventually(t, "the lock is in the NSG", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-web1-")) == 1
	})
	var fails []jit.Event
	eventually(t, "the recovery is logged", 5*time.Second, func() bool {
		fails = w.events(web.ID, jit.OpEnforceFail)
		for _, e := range w.events(web.ID, jit.OpEnforceApply) {
			if bytes.Contains(e.Details, []byte(`"recovered"`)) {
				return true
			}
		}
		return false
	})
	if len(fails) != 1 {
		t.Fatalf("%d enforcement.fail events, want 1 (the same failure again is not news)", len(fails))
	}
	var d struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(fails[0].Details, &d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Error, "Azure answered 500 Internal Server Error (InternalServerError)") || !strings.Contains(d.Error, "web-nsg") || d.Code != jit.EUnavailable {
		t.Errorf("failure details = %+v", d)
	}
	v := w.vm("web1")
	if v.Labels[control.LabelEnforcementError] != "" || v.EnforcementError != "" || v.Classification.Reason != "" {
		t.Errorf("after recovery: labels %v, enforcement error %q, classification %+v", v.Labels, v.EnforcementError, v.Classification)
	}
}

// No free priority for the lock: the VM is unsupported with that reason
// until the operator makes room; then the lock is placed.
func TestNoFreePriority(t *testing.T) {
	w := newWorld(t)
	nsg := w.f.AddNSG("rg", "tight-nsg", rule("allow-ssh-first", 100, allow, "*", "22", tcp))
	w.f.AddVM(azurefake.VMSpec{ResourceGroup: "rg", Name: "jump", IP: "10.0.1.9", NICNSG: nsg})
	w.start()
	v := w.waitDiscovered("jump")
	w.enableJIT(v.ID, 22)
	eventually(t, "the VM shows the enforcement error", 10*time.Second, func() bool {
		v = w.vm("jump")
		return strings.Contains(v.EnforcementError, "no free priority")
	})
	if !strings.Contains(v.Classification.Reason, "no free priority") || v.Report.Enforceable {
		t.Errorf("classification %+v, report %+v", v.Classification, v.Report)
	}
	if evs := w.events(v.ID, jit.OpEnforceFail); len(evs) != 1 {
		t.Errorf("%d enforcement.fail events, want 1", len(evs))
	}
	// A re-discovery does not hide the problem.
	if _, err := w.syncer.SyncNow(ctx()); err != nil {
		t.Fatal(err)
	}
	if v := w.vm("jump"); !strings.Contains(v.EnforcementError, "no free priority") {
		t.Errorf("after re-discovery: %+v", v.Classification)
	}

	w.f.AddRule(nsg, rule("allow-ssh-first", 300, allow, "*", "22", tcp))
	eventually(t, "the lock is placed once there is room", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-jump-")) == 1
	})
	eventually(t, "the VM is supported again", 5*time.Second, func() bool {
		v = w.vm("jump")
		return v.Report.Enforceable && v.EnforcementError == ""
	})
	if w.f.Reachable(t, v.ExternalID, me, 22, "TCP") {
		t.Errorf("port 22 open despite the lock")
	}
}

// A VM deleted from ajar loses its rules in Azure; so does a VM deleted
// from Azure whose NSG stays, and it becomes unsupported.
func TestDeletedVMCleanedUp(t *testing.T) {
	w := newWorld(t)
	nsg := jitWorld(w)
	w.start()
	web := w.waitDiscovered("web1")
	web2 := w.waitDiscovered("web2")
	w.enableJIT(web.ID, 22)
	w.enableJIT(web2.ID, 22)
	eventually(t, "the locks are in the NSG", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-")) == 2
	})
	if err := w.ctl.DeleteVM(ctx(), admin, web.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web1's lock is gone", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-deny-web1-")) == 0
	})

	w.f.DeleteVM("rg", "web2")
	if _, err := w.syncer.SyncNow(ctx()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web2's lock is gone", 10*time.Second, func() bool {
		return len(w.ajarRules(nsg, "ajar-")) == 0
	})
	if c := w.vm("web2").Classification; c.JIT != jit.JITConfigured || c.Reason != ReasonVanished {
		t.Errorf("web2 gone from Azure: %+v", c)
	}
}

// Run stops with its context and leaves no goroutine behind.
func TestRunStops(t *testing.T) {
	w := newWorld(t)
	jitWorld(w)
	c, cancel := context.WithCancel(ctx())
	done := make(chan error)
	go func() { done <- w.syncer.Run(c) }()
	w.waitDiscovered("web1")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestOneReplicaEnforces: two servers with the Azure backend share a
// PostgreSQL database; one of them leads and only its Azure sees writes;
// when it stops, the other takes over and enforces what changed since.
func TestOneReplicaEnforces(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newReplica(t, dsn), newReplica(t, dsn)
	nsgA, nsgB := jitWorld(a), jitWorld(b) // the same VMs in both Azures
	a.start()
	web := a.waitDiscovered("web1")
	b.start() // b waits: a leads
	a.enableJIT(web.ID, 22)
	eventually(t, "the leader locks the port", 10*time.Second, func() bool {
		return len(a.f.Rules(nsgA, true)) > 0
	})
	time.Sleep(time.Second) // time for b to write, if it wrongly did
	if n := len(b.f.Rules(nsgB, true)); n != 0 || b.f.WriteCount() != 0 {
		t.Fatalf("the replica that does not lead wrote %d times (%d ajar rules)", b.f.WriteCount(), n)
	}
	a.stop()
	eventually(t, "the other replica takes over and locks the port", 15*time.Second, func() bool {
		return len(b.f.Rules(nsgB, true)) > 0
	})
	b.request(web.ID, 22, "PT10M")
	eventually(t, "the new leader opens the grant", 10*time.Second, func() bool {
		return len(b.f.Rules(nsgB, true)) > len(a.f.Rules(nsgA, true))
	})
}
