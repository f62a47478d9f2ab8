package gcpfw

// Google Cloud as ajard runs it: a real SQLite store, the control plane
// with its expirer, and cloudsync's loop over a Provider whose SDK
// clients talk to computefake.

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/cloudsync"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/gcpfw/computefake"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

type syncWorld struct {
	t      testing.TB
	f      *fakeGCP
	dbPath string
	db     store.Store
	client *Client
	ctl    *control.Control
	syncer *cloudsync.Syncer
	stop   func()
}

func newSyncWorld(t testing.TB) *syncWorld {
	w := &syncWorld{t: t, f: newFake(t), dbPath: filepath.Join(t.TempDir(), "ajar.db")}
	w.open()
	t.Cleanup(w.close)
	return w
}

func (w *syncWorld) open() {
	log := testLogger(w.t)
	db, err := sqlite.Open(context.Background(), w.dbPath, log)
	if err != nil {
		w.t.Fatalf("open store: %v", err)
	}
	w.db = db
	w.ctl = control.New(db, log, time.Now)
	w.client = w.f.newClient()
	p := NewProvider(NewEnforcer(w.client, log), []string{project}, nil)
	w.syncer = cloudsync.New(w.ctl, p, cloudsync.Config{Every: time.Hour, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, log)
}

func (w *syncWorld) start() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.ctl.RunExpirer(ctx) })
	wg.Go(func() {
		if err := w.syncer.RunLeading(ctx); err != nil {
			w.t.Errorf("run: %v", err)
		}
	})
	w.stop = func() { cancel(); wg.Wait(); w.stop = nil }
}

func (w *syncWorld) close() {
	if w.stop != nil {
		w.stop()
	}
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
	if w.client != nil {
		w.client.Close()
		w.client = nil
	}
}

func (w *syncWorld) restart() {
	w.close()
	w.open()
}

var syncAdmin = &control.Actor{User: "root", Address: home, Token: jit.Token{Kind: jit.TokenUser},
	Bindings: []jit.RoleBinding{{User: "root", Role: jit.RoleAdmin, Group: jit.AllGroups}}}

func (w *syncWorld) vm(name string) jit.VMView {
	w.t.Helper()
	vms, _, err := w.ctl.ListVMs(context.Background(), syncAdmin, control.VMListFilter{Name: name})
	if err != nil || len(vms) != 1 {
		w.t.Fatalf("VMs named %s: %d, %v", name, len(vms), err)
	}
	return vms[0]
}

func (w *syncWorld) waitVM(name string) jit.VMView {
	w.t.Helper()
	eventually(w.t, name+" is discovered", 10*time.Second, func() bool {
		vms, _, err := w.ctl.ListVMs(context.Background(), syncAdmin, control.VMListFilter{Name: name})
		return err == nil && len(vms) == 1
	})
	return w.vm(name)
}

func (w *syncWorld) enableJIT(vmID string, ports ...int) {
	w.t.Helper()
	var p jit.Policy
	for _, n := range ports {
		p.Ports = append(p.Ports, jit.PortRule{Number: n, Protocol: jit.ProtoAny, AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"})
	}
	if _, err := w.ctl.PutPolicy(context.Background(), syncAdmin, vmID, p); err != nil {
		w.t.Fatalf("enable JIT: %v", err)
	}
}

func (w *syncWorld) request(vmID string, port int, duration string) jit.Grant {
	w.t.Helper()
	r, err := w.ctl.RequestAccess(context.Background(), syncAdmin, jit.AccessRequest{Justification: "test",
		VirtualMachines: []jit.VMRequest{{ID: vmID, Ports: []jit.PortRequest{{Number: port, Duration: duration}}}}})
	if err != nil {
		w.t.Fatalf("request: %v", err)
	}
	return r.Grants[0]
}

// hasRule reports whether project has a rule named name.
func (w *syncWorld) hasRule(name string) bool {
	_, ok := w.f.Firewalls(project)[name]
	return ok
}

func eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	poll(t, what, timeout, 5*time.Millisecond, cond)
}

// poll checks cond every interval until it holds, failing the test after
// timeout.
func poll(t testing.TB, what string, timeout, interval time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

func syncLayout(f *fakeGCP) {
	f.AddFirewall(project, rule("allow-ssh-anywhere", 1000, true, "0.0.0.0/0", []string{"22"}))
	f.AddFirewall(project, rule("allow-https", 1000, true, "0.0.0.0/0", []string{"443"}))
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", ExternalIP: "203.0.113.4"})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web2", InternalIP: "10.0.1.5"})
}

// The whole story, with no one but the Syncer and the expirer touching
// Google Cloud: discovery, enable JIT, request, expiry, an instance
// deleted under an open grant, disable.
func TestSyncStory(t *testing.T) {
	w := newSyncWorld(t)
	syncLayout(w.f)
	foreignBefore := foreign(t, w.f, project)
	w.start()
	web := w.waitVM("web1")
	w.waitVM("web2")
	if web.Group != project || web.Backend != jit.BackendGCP || web.Report == nil || !slices.Equal(web.Report.Exposed, tcp(22)) {
		t.Fatalf("web1 discovered as %+v report %+v", web.VM, web.Report)
	}
	r, _ := parseRef(web.ExternalID)
	n := networkRef{project, "default"}

	w.enableJIT(web.ID, 22)
	eventually(t, "the lock is in place", 10*time.Second, func() bool {
		return w.hasRule(denyName(r, n, "4")) && slices.Contains(w.f.Instance(project, zone, "web1").GetTags().GetItems(), Tag(r))
	})
	if w.f.Reachable(project, zone, "web1", home, 22, "TCP") || !w.f.Reachable(project, zone, "web1", home, 443, "TCP") {
		t.Error("the lock does not close 22 alone")
	}
	eventually(t, "the VM reports the shadowed rule", 5*time.Second, func() bool {
		return slices.Equal(control.ShadowedRules(w.vm("web1").VM), []string{"allow-ssh-anywhere"})
	})

	g := w.request(web.ID, 22, "PT3S")
	eventually(t, "the grant's rule is in place", 5*time.Second, func() bool { return w.hasRule(allowName(r, n, g.ID)) })
	if !w.f.Reachable(project, zone, "web1", home, 22, "TCP") || w.f.Reachable(project, zone, "web1", office, 22, "TCP") {
		t.Error("the grant does not open 22 to its source alone")
	}
	eventually(t, "the expired grant's rule is gone", 10*time.Second, func() bool { return !w.hasRule(allowName(r, n, g.ID)) })
	if w.f.Reachable(project, zone, "web1", home, 22, "TCP") {
		t.Error("22 open after expiry")
	}

	// Disable JIT: ajar's rules and tag go; the operator's rules never changed.
	if err := w.ctl.DeletePolicy(context.Background(), syncAdmin, web.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web1's rules and tag are gone", 10*time.Second, func() bool {
		return len(ajarRules(w.f, project)) == 0 && len(w.f.Instance(project, zone, "web1").GetTags().GetItems()) == 0
	})
	foreignAfter := foreign(t, w.f, project)
	for name, fw := range foreignBefore {
		if foreignAfter[name] != fw {
			t.Errorf("the operator's rule %s changed", name)
		}
	}
}

// An instance is deleted in Google Cloud while a grant on it is open:
// ajar's rules go (its addresses may go to another instance) and the VM
// shows why it is no longer enforced.
func TestSyncInstanceDeletedUnderGrant(t *testing.T) {
	w := newSyncWorld(t)
	syncLayout(w.f)
	w.start()
	web := w.waitVM("web1")
	w.enableJIT(web.ID, 22)
	g := w.request(web.ID, 22, "PT1H")
	r, _ := parseRef(web.ExternalID)
	eventually(t, "the grant's rule is in place", 10*time.Second, func() bool { return w.hasRule(allowName(r, networkRef{project, "default"}, g.ID)) })

	w.f.DeleteInstance(project, zone, "web1")
	if _, err := w.syncer.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted instance's rules are gone", 10*time.Second, func() bool { return len(ajarRules(w.f, project)) == 0 })
	eventually(t, "the VM is unsupported", 5*time.Second, func() bool {
		v := w.vm("web1")
		return v.Report != nil && !v.Report.Enforceable
	})
}

// The firewall quota runs out: the VM becomes unsupported with the reason,
// and supported again once there is room.
func TestSyncQuotaReached(t *testing.T) {
	w := newSyncWorld(t)
	syncLayout(w.f)
	w.f.SetFirewallQuota(project, 3)
	w.start()
	web := w.waitVM("web1")
	w.enableJIT(web.ID, 22)
	eventually(t, "the VM is unsupported, saying why", 10*time.Second, func() bool {
		v := w.vm("web1")
		return v.Report != nil && !v.Report.Enforceable && strings.Contains(v.Report.Reason, "Quota 'FIREWALLS' exceeded")
	})
	if w.f.Reachable(project, zone, "web1", home, 22, "TCP") == false {
		t.Error("half a lock took hold")
	}
	w.f.SetFirewallQuota(project, 100)
	eventually(t, "the VM is supported again", 10*time.Second, func() bool {
		v := w.vm("web1")
		return v.Report != nil && v.Report.Enforceable
	})
	if w.f.Reachable(project, zone, "web1", home, 22, "TCP") {
		t.Error("22 open once the lock could be written")
	}
}

// ajard stops with grants open; one ends meanwhile. Back up, ajar removes
// its rule and keeps the live one's.
func TestSyncRestartRemovesEndedGrants(t *testing.T) {
	w := newSyncWorld(t)
	syncLayout(w.f)
	w.start()
	web := w.waitVM("web1")
	w.enableJIT(web.ID, 22, 3389)
	short := w.request(web.ID, 22, "PT3S")
	long := w.request(web.ID, 3389, "PT1H")
	r, _ := parseRef(web.ExternalID)
	n := networkRef{project, "default"}
	eventually(t, "both grants' rules are in place", 10*time.Second, func() bool {
		return w.hasRule(allowName(r, n, short.ID)) && w.hasRule(allowName(r, n, long.ID))
	})
	w.stop()
	time.Sleep(time.Until(short.EndTime) + 100*time.Millisecond)
	w.restart()
	if !w.hasRule(allowName(r, n, short.ID)) {
		t.Fatal("the ended grant's rule went while ajard was down")
	}
	w.start()
	eventually(t, "the ended grant's rule is gone", 10*time.Second, func() bool { return !w.hasRule(allowName(r, n, short.ID)) })
	if !w.hasRule(allowName(r, n, long.ID)) {
		t.Error("the live grant's rule went too")
	}
}

// BenchmarkGrantToRule measures, inside ajar, the time from a granted
// request to its allow rule present in (the fake) Google Cloud, and from
// the grant's end to the rule gone: the Syncer, the control plane and the
// SDK's HTTP round trips, without Google's own latency.
func BenchmarkGrantToRule(b *testing.B) {
	w := newSyncWorld(b)
	syncLayout(w.f)
	w.start()
	web := w.waitVM("web1")
	w.enableJIT(web.ID, 22)
	r, _ := parseRef(web.ExternalID)
	n := networkRef{project, "default"}
	eventually(b, "the lock is in place", 10*time.Second, func() bool {
		return slices.Contains(w.f.Instance(project, zone, "web1").GetTags().GetItems(), Tag(r))
	})
	var open, closed []time.Duration
	for b.Loop() {
		start := time.Now()
		g := w.request(web.ID, 22, "PT1S")
		name := allowName(r, n, g.ID)
		poll(b, "the rule is present", 10*time.Second, 100*time.Microsecond, func() bool { return w.hasRule(name) })
		open = append(open, time.Since(start))
		poll(b, "the rule is gone", 10*time.Second, 100*time.Microsecond, func() bool { return !w.hasRule(name) })
		closed = append(closed, time.Since(g.EndTime))
	}
	report := func(unit string, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, unit+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, unit+"-p99-ms")
	}
	report("open", open)
	report("close", closed)
}
