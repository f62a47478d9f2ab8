package gcpfw

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/ajarhq/ajar/internal/enforce/enforcetest"
	"github.com/ajarhq/ajar/internal/gcpfw/computefake"
	"github.com/ajarhq/ajar/internal/jit"
)

var rule = computefake.Rule

func TestEnforcerSuite(t *testing.T) {
	layouts := []struct {
		name  string
		setUp func(f *fakeGCP) (vmProject string)
	}{
		{"all instances, default priority", func(f *fakeGCP) string {
			f.AddFirewall(project, rule("allow-app-from-anywhere", 1000, true, "0.0.0.0/0", []string{"8000-9000"}))
			f.AddFirewall(project, rule("deny-known-bad-host", 990, false, "192.0.2.66/32", nil))
			f.AddFirewall(project, rule("allow-app-from-office", 900, true, "198.51.100.0/24", []string{"8443"}))
			f.AddFirewall(project, rule("allow-app-v6", 1000, true, "::/0", []string{"8080"}))
			f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", Tags: []string{"web"}})
			return project
		}},
		{"target tag ahead of the default", func(f *fakeGCP) string {
			f.AddFirewall(project, rule("allow-web", 500, true, "0.0.0.0/0", []string{"80", "8080", "8443"}, "web"))
			f.AddFirewall(project, rule("allow-db", 100, true, "0.0.0.0/0", []string{"8080"}, "db"))
			f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", ExternalIP: "203.0.113.200", Tags: []string{"web"}})
			return project
		}},
		{"target service account, Shared VPC", func(f *fakeGCP) string {
			fw := rule("allow-all-from-anywhere", 65000, true, "0.0.0.0/0", nil)
			fw.TargetServiceAccounts = []string{"web@shop-prod.iam.gserviceaccount.com"}
			fw.Network = proto.String("shared")
			f.AddFirewall("net-host", fw)
			f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4",
				Network: "projects/net-host/global/networks/shared", ServiceAccount: "web@shop-prod.iam.gserviceaccount.com"})
			return "net-host"
		}},
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			enforcetest.Run(t, func(t *testing.T) enforcetest.Harness {
				f := newFake(t)
				l.setUp(f)
				return enforcetest.Harness{
					Enforcer:  f.enforcer(),
					VM:        gcpVM("web1"),
					SourceA:   netip.MustParseAddr("203.0.113.10"),
					SourceB:   netip.MustParseAddr("198.51.100.20"),
					SourceNet: netip.MustParsePrefix("203.0.113.0/24"),
					Port:      8080,
					OtherPort: 8443,
					Reachable: func(t *testing.T, src netip.Addr, port int, proto string) bool {
						return f.Reachable(project, zone, "web1", src, port, proto)
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
	return jit.DesiredState{VMID: "vm", Revision: 1, Lock: l, Grants: grants}
}

// ajarRules returns the names of ajar's rules in project.
func ajarRules(f *fakeGCP, p string) []string {
	var out []string
	for name := range f.Firewalls(p) {
		if strings.HasPrefix(name, "ajar-") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// foreign returns the rules of project that are not ajar's, as JSON.
func foreign(t *testing.T, f *fakeGCP, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, fw := range f.Firewalls(p) {
		if !strings.HasPrefix(name, "ajar-") {
			out[name] = fw.String()
		}
	}
	return out
}

var (
	office = netip.MustParseAddr("198.51.100.7")
	home   = netip.MustParseAddr("203.0.113.10")
)

func TestLockPlacementAndShadowed(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddFirewall(project, rule("allow-ssh-anywhere", 500, true, "0.0.0.0/0", []string{"22"}, "ssh"))
	f.AddFirewall(project, rule("allow-ssh-office", 400, true, "198.51.100.0/24", []string{"22"}))
	f.AddFirewall(project, rule("allow-rdp-anywhere", 2000, true, "::/0", []string{"3389"}))
	f.AddFirewall(project, rule("allow-ssh-other-tag", 10, true, "0.0.0.0/0", []string{"22"}, "other"))
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", Tags: []string{"ssh"}})
	before := foreign(t, f, project)
	e := f.enforcer()
	vm := gcpVM("web1")

	if err := e.Apply(ctx, vm, state(lock(22, 3389), grantRule("g1", 22, jit.ProtoTCP, home.String()+"/32"))); err != nil {
		t.Fatal(err)
	}
	rules := f.Firewalls(project)
	r, _ := parseRef(vm.ExternalID)
	n := networkRef{project, "default"}
	deny, allow := rules[denyName(r, n, "4")], rules[allowName(r, n, "g1")]
	if deny == nil || allow == nil {
		t.Fatalf("ajar's rules: %v", ajarRules(f, project))
	}
	if deny.GetPriority() != 500 || allow.GetPriority() != 499 {
		t.Errorf("deny at %d, allow at %d; want 500 and 499 (ahead of allow-ssh-anywhere)", deny.GetPriority(), allow.GetPriority())
	}
	if got := rules[denyName(r, n, "6")].GetSourceRanges(); !slices.Equal(got, []string{"::/0"}) {
		t.Errorf("IPv6 deny from %v", got)
	}
	if !slices.Equal(deny.TargetTags, []string{Tag(r)}) || !strings.Contains(allow.GetDescription(), "g1") {
		t.Errorf("deny targets %v, allow described %q", deny.TargetTags, allow.GetDescription())
	}
	if tags := f.Instance(project, zone, "web1").GetTags().GetItems(); !slices.Equal(tags, []string{"ssh", Tag(r)}) {
		t.Errorf("instance tags %v", tags)
	}
	if !f.Reachable(project, zone, "web1", home, 22, "TCP") || f.Reachable(project, zone, "web1", netip.MustParseAddr("192.0.2.1"), 22, "TCP") {
		t.Error("the grant does not open port 22 to its source only")
	}
	if !f.Reachable(project, zone, "web1", office, 22, "TCP") {
		t.Error("the office rule ahead of the lock no longer lets the office in")
	}
	sh, err := e.Shadowed(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"allow-rdp-anywhere", "allow-ssh-anywhere"}; !slices.Equal(sh, want) {
		t.Errorf("shadowed %v, want %v", sh, want)
	}

	// The lock re-applied changes nothing; removed, nothing of ajar's is left.
	calls := f.Calls("POST", "firewalls") + f.Calls("PATCH", "firewalls") + f.Calls("DELETE", "firewalls") + f.Calls("POST", "setTags")
	if err := e.Apply(ctx, vm, state(lock(22, 3389), grantRule("g1", 22, jit.ProtoTCP, home.String()+"/32"))); err != nil {
		t.Fatal(err)
	}
	if again := f.Calls("POST", "firewalls") + f.Calls("PATCH", "firewalls") + f.Calls("DELETE", "firewalls") + f.Calls("POST", "setTags"); again != calls {
		t.Errorf("re-applying the same state made %d writes", again-calls)
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if got := ajarRules(f, project); len(got) != 0 {
		t.Errorf("after Remove: %v", got)
	}
	if tags := f.Instance(project, zone, "web1").GetTags().GetItems(); !slices.Equal(tags, []string{"ssh"}) {
		t.Errorf("after Remove the instance has tags %v", tags)
	}
	after := foreign(t, f, project)
	for name, fw := range before {
		if after[name] != fw {
			t.Errorf("rule %s changed:\n%s\n%s", name, fw, after[name])
		}
	}
	if f.Calls("GET", "operations") == 0 {
		t.Error("no operation was polled")
	}
}

func TestPriorityZeroConflict(t *testing.T) {
	f := newFake(t)
	f.AddFirewall(project, rule("allow-ssh-first", 0, true, "0.0.0.0/0", []string{"22"}))
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	err := f.enforcer().Apply(context.Background(), gcpVM("web1"), state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32")))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "priority 0") {
		t.Fatalf("err = %v, want a conflict naming priority 0", err)
	}
}

func TestThrottlingRetried(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	e := f.enforcer()
	f.Throttle("/global/firewalls", 3)
	f.Throttle("/instances/web1", 2)
	f.Fail("POST", "/setTags", 1, http.StatusForbidden, "userRateLimitExceeded", "User Rate Limit Exceeded")
	f.Fail("GET", "/operations/", 1, http.StatusBadRequest, "resourceNotReady", "The resource is not ready")
	if err := e.Apply(ctx, gcpVM("web1"), state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32"))); err != nil {
		t.Fatalf("apply through throttling: %v", err)
	}
	if !f.Reachable(project, zone, "web1", home, 22, "TCP") || f.Reachable(project, zone, "web1", office, 22, "TCP") {
		t.Error("the lock and grant do not hold after throttling")
	}

	// Throttled for longer than the retries last: a passing failure, not
	// one that makes the VM unsupported.
	f.Throttle("/global/firewalls", -1)
	err := e.Apply(ctx, gcpVM("web1"), state(lock(22)))
	if err == nil {
		t.Fatal("apply succeeded while every call was throttled")
	}
	if code := jit.ErrorCode(err); code == jit.EConflict || code == jit.EForbidden || code == jit.ENotFound || code == jit.EInvalid {
		t.Errorf("throttling gave %s (%v), which would make the VM unsupported", code, err)
	}
	if ue := UserError(err); ue == nil || !strings.Contains(ue.Message, "429") {
		t.Errorf("user error %v, want the 429 named", ue)
	}
	f.Heal()
}

func TestQuotaReached(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddFirewall(project, rule("allow-ssh-anywhere", 1000, true, "0.0.0.0/0", []string{"22"}))
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	f.SetFirewallQuota(project, 2) // room for the IPv4 deny only
	err := f.enforcer().Apply(ctx, gcpVM("web1"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "quota") || !strings.Contains(jit.ErrorMessage(err), "FIREWALLS") {
		t.Fatalf("err = %v, want a conflict saying the FIREWALLS quota is reached", err)
	}
	// Half a lock never takes hold: the tag comes last.
	if tags := f.Instance(project, zone, "web1").GetTags().GetItems(); len(tags) != 0 {
		t.Errorf("instance tagged %v after a failed lock", tags)
	}
	if !f.Reachable(project, zone, "web1", home, 22, "TCP") {
		t.Error("port 22 changed after a failed lock")
	}
}

func TestPermissionDenied(t *testing.T) {
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	f.Fail("POST", "/global/firewalls", -1, http.StatusForbidden, "forbidden", "Required 'compute.firewalls.create' permission for 'projects/shop-prod/global/firewalls/x'")
	err := f.enforcer().Apply(context.Background(), gcpVM("web1"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EForbidden || !strings.Contains(jit.ErrorMessage(err), "permission to create firewall rule") {
		t.Fatalf("err = %v, want forbidden naming what", err)
	}
}

func TestTagFingerprintConflict(t *testing.T) {
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", Tags: []string{"web"}})
	f.Fail("POST", "/setTags", 2, http.StatusPreconditionFailed, "conditionNotMet", "Supplied fingerprint does not match current metadata fingerprint.")
	gets := f.Calls("GET", "instances")
	if err := f.enforcer().Apply(context.Background(), gcpVM("web1"), state(lock(22))); err != nil {
		t.Fatal(err)
	}
	if got := f.Calls("GET", "instances") - gets; got != 3 {
		t.Errorf("instance read %d times, want 3 (once, then after each conflict)", got)
	}
	r, _ := parseRef(gcpVM("web1").ExternalID)
	if tags := f.Instance(project, zone, "web1").GetTags().GetItems(); !slices.Equal(tags, []string{"web", Tag(r)}) {
		t.Errorf("tags %v", tags)
	}
}

func TestInstanceDeletedWhileGrantOpen(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	e := f.enforcer()
	vm := gcpVM("web1")
	vm.Labels = map[string]string{LabelNetworks: "projects/" + project + "/global/networks/default"}
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32"))); err != nil {
		t.Fatal(err)
	}
	if len(ajarRules(f, project)) != 3 {
		t.Fatalf("ajar's rules: %v", ajarRules(f, project))
	}
	f.DeleteInstance(project, zone, "web1")
	err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32")))
	if jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("apply on a deleted instance: %v, want not found", err)
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove after the instance is gone: %v", err)
	}
	if got := ajarRules(f, project); len(got) != 0 {
		t.Errorf("rules left behind: %v", got)
	}
}

func TestRestartRemovesEndedGrants(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddFirewall(project, rule("allow-ssh-anywhere", 1000, true, "0.0.0.0/0", []string{"22"}))
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	vm := gcpVM("web1")
	g1 := grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32")
	g2 := grantRule("g2", 22, jit.ProtoTCP, "198.51.100.7/32")
	if err := f.enforcer().Apply(ctx, vm, state(lock(22), g1, g2)); err != nil {
		t.Fatal(err)
	}
	// ajard stops; g1 ends meanwhile. A new process reconciles.
	if err := f.enforcer().Apply(ctx, vm, state(lock(22), g2)); err != nil {
		t.Fatal(err)
	}
	r, _ := parseRef(vm.ExternalID)
	n := networkRef{project, "default"}
	rules := f.Firewalls(project)
	if rules[allowName(r, n, "g1")] != nil || rules[allowName(r, n, "g2")] == nil {
		t.Errorf("ajar's rules after restart: %v", ajarRules(f, project))
	}
	if f.Reachable(project, zone, "web1", home, 22, "TCP") || !f.Reachable(project, zone, "web1", office, 22, "TCP") {
		t.Error("the ended grant still opens, or the live one does not")
	}
}

func TestRuleDeletedOrChangedByHand(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	e := f.enforcer()
	vm := gcpVM("web1")
	st := state(lock(22))
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatal(err)
	}
	r, _ := parseRef(vm.ExternalID)
	n := networkRef{project, "default"}
	// Someone widens ajar's deny's priority and deletes the IPv6 one.
	changed := f.Firewalls(project)[denyName(r, n, "4")]
	changed.Priority = proto.Int32(60000)
	f.AddFirewall(project, changed)
	delete6 := func() {
		c := f.client()
		op, err := c.firewalls.Delete(ctx, &computepb.DeleteFirewallRequest{Project: project, Firewall: denyName(r, n, "6")})
		if err == nil {
			err = c.wait(ctx, op, "delete")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	delete6()
	if err := e.Apply(ctx, vm, st); err != nil {
		t.Fatal(err)
	}
	rules := f.Firewalls(project)
	if rules[denyName(r, n, "4")].GetPriority() != DefaultDenyPriority || rules[denyName(r, n, "6")] == nil {
		t.Errorf("ajar's lock not restored: %v", ajarRules(f, project))
	}
}

func TestWrongBackendOrID(t *testing.T) {
	f := newFake(t)
	e := f.enforcer()
	vm := gcpVM("web1")
	vm.Backend = jit.BackendAzure
	if err := e.Apply(context.Background(), vm, state(lock(22))); jit.ErrorCode(err) != jit.EInvalid {
		t.Errorf("azure VM: %v", err)
	}
	vm = gcpVM("web1")
	vm.ExternalID = "projects/x/instances/y"
	if err := e.Remove(context.Background(), vm); jit.ErrorCode(err) != jit.EInvalid || !strings.Contains(jit.ErrorMessage(err), "projects/PROJECT/zones/ZONE/instances/NAME") {
		t.Errorf("bad id: %v", err)
	}
}

// In a Shared VPC the rules live in the host project; ajar needs no
// firewall permission in the instance's own project.
func TestSharedVPCWithoutRulesInServiceProject(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.8.0.2", Network: "projects/net-host/global/networks/shared"})
	f.Fail("GET", "/projects/"+project+"/global/firewalls", -1, http.StatusForbidden, "forbidden", "Required 'compute.firewalls.list' permission for 'projects/shop-prod'")
	e := f.enforcer()
	vm := gcpVM("web1")
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32"))); err != nil {
		t.Fatal(err)
	}
	if got := ajarRules(f, "net-host"); len(got) != 3 {
		t.Errorf("rules in the host project: %v", got)
	}
	if !f.Reachable(project, zone, "web1", home, 22, "TCP") || f.Reachable(project, zone, "web1", office, 22, "TCP") {
		t.Error("the grant does not hold in the Shared VPC")
	}
	if _, err := e.Shadowed(ctx, vm); err != nil {
		t.Errorf("shadowed rules in the Shared VPC: %v", err)
	}
	f.DeleteInstance(project, zone, "web1")
	vm.Labels = map[string]string{LabelNetworks: "projects/net-host/global/networks/shared"}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if got := ajarRules(f, "net-host"); len(got) != 0 {
		t.Errorf("rules left in the host project: %v", got)
	}
}

// Google accepts a change and fails its operation: the operation's error
// decides, as the request's would.
func TestOperationFails(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	e := f.enforcer()
	f.FailOperation("insert", 1, http.StatusForbidden, "QUOTA_EXCEEDED", "Quota 'FIREWALLS' exceeded.  Limit: 2.0 globally.")
	err := e.Apply(ctx, gcpVM("web1"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "Quota 'FIREWALLS' exceeded") {
		t.Fatalf("failed insert operation: %v, want a quota conflict", err)
	}
	f.FailOperation("setTags", 1, http.StatusForbidden, "PERMISSION_DENIED", "Required 'compute.instances.setTags' permission")
	err = e.Apply(ctx, gcpVM("web1"), state(lock(22)))
	if jit.ErrorCode(err) != jit.EForbidden || !strings.Contains(jit.ErrorMessage(err), "set the network tags of instance") {
		t.Fatalf("failed setTags operation: %v, want forbidden", err)
	}
	f.FailOperation("delete", 1, http.StatusServiceUnavailable, "RESOURCE_NOT_READY", "The resource is not ready")
	if err := e.Apply(ctx, gcpVM("web1"), state(nil)); err != nil {
		t.Fatalf("a passing operation failure is retried: %v", err)
	}
	if got := ajarRules(f, project); len(got) != 0 {
		t.Errorf("rules left: %v", got)
	}
}

// Operations that take a while are waited for, and no longer than
// Client.OpTimeout.
func TestSlowOperations(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4"})
	c := f.client()
	e := NewEnforcer(c, testLogger(t))
	f.OperationPolls = 3
	polls := f.Calls("GET", "operations")
	if err := e.Apply(ctx, gcpVM("web1"), state(lock(22))); err != nil {
		t.Fatal(err)
	}
	if got := f.Calls("GET", "operations") - polls; got != 3*4 {
		t.Errorf("%d polls for 3 operations answered running 3 times each and a fourth done; want 12", got)
	}
	if f.Reachable(project, zone, "web1", home, 22, "TCP") {
		t.Error("22 open after a slow lock")
	}
	f.OperationPolls = 1 << 20
	c.OpTimeout = 50 * time.Millisecond
	err := e.Apply(ctx, gcpVM("web1"), state(lock(22, 3389)))
	if err == nil || !strings.Contains(err.Error(), "not done after 50ms") {
		t.Fatalf("an operation that never ends: %v", err)
	}
}

// An instance with interfaces in two networks is locked in both, and
// cleaned from both.
func TestTwoNetworks(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", MoreNetworks: []string{"backend"}})
	e := f.enforcer()
	vm := gcpVM("web1")
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.10/32"))); err != nil {
		t.Fatal(err)
	}
	r, _ := parseRef(vm.ExternalID)
	rules := f.Firewalls(project)
	for _, n := range []networkRef{{project, "default"}, {project, "backend"}} {
		for _, name := range []string{denyName(r, n, "4"), denyName(r, n, "6"), allowName(r, n, "g1")} {
			fw := rules[name]
			if fw == nil || !strings.HasSuffix(fw.GetNetwork(), "/global/networks/"+n.name) {
				t.Errorf("rule %s in network %s: %v", name, n.name, fw)
			}
		}
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if got := ajarRules(f, project); len(got) != 0 {
		t.Errorf("rules left: %v", got)
	}
}
