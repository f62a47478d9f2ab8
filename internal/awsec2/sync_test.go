package awsec2_test

// The AWS backend inside ajard's cloud loop: a real SQLite store, the
// control plane with its expirer, and a cloudsync.Syncer whose real EC2
// client talks to ec2fake.

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/awsec2"
	"github.com/ajarhq/ajar/internal/awsec2/ec2fake"
	"github.com/ajarhq/ajar/internal/cloudsync"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

const region = "eu-west-1"

var (
	me    = netip.MustParseAddr("203.0.113.7")
	other = netip.MustParseAddr("198.51.100.99")
	admin = &control.Actor{User: "root", Address: me, Token: jit.Token{Kind: jit.TokenUser},
		Bindings: []jit.RoleBinding{{User: "root", Role: jit.RoleAdmin, Group: jit.AllGroups}}}
)

type world struct {
	t      testing.TB
	f      *ec2fake.EC2
	dbPath string
	db     store.Store
	ctl    *control.Control
	syncer *cloudsync.Syncer
	log    *slog.Logger
	stop   func()
}

func newWorld(t testing.TB) *world {
	w := &world{t: t, f: ec2fake.New(t), dbPath: filepath.Join(t.TempDir(), "ajar.db")}
	w.log = slog.New(slog.DiscardHandler)
	if tt, ok := t.(*testing.T); ok {
		w.log = slog.New(slog.NewTextHandler(testWriter{tt}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w.open()
	t.Cleanup(w.close)
	return w
}

func (w *world) open() {
	db, err := sqlite.Open(context.Background(), w.dbPath, w.log)
	if err != nil {
		w.t.Fatalf("open store: %v", err)
	}
	w.db = db
	w.ctl = control.New(db, w.log, time.Now)
	cfg := aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(w.f.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
	client := awsec2.NewClient(cfg, w.log, nil)
	client.Settle = time.Millisecond
	p := awsec2.NewProvider(awsec2.NewEnforcer(client, true), []string{region}, nil)
	w.syncer = cloudsync.New(w.ctl, p, cloudsync.Config{Every: time.Hour, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, w.log)
}

func (w *world) start() {
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

func (w *world) close() {
	if w.stop != nil {
		w.stop()
	}
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
}

func (w *world) restart() { w.close(); w.open() }

type testWriter struct{ t *testing.T }

func (tw testWriter) Write(p []byte) (int, error) {
	tw.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func (w *world) vm(name string) jit.VMView {
	w.t.Helper()
	vms, _, err := w.ctl.ListVMs(context.Background(), admin, control.VMListFilter{Name: name})
	if err != nil || len(vms) != 1 {
		w.t.Fatalf("%d VMs named %s (%v)", len(vms), name, err)
	}
	return vms[0]
}

func (w *world) enableJIT(vmID string, ports ...int) {
	w.t.Helper()
	var p jit.Policy
	for _, n := range ports {
		p.Ports = append(p.Ports, jit.PortRule{Number: n, Protocol: jit.ProtoTCP, AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"})
	}
	if _, err := w.ctl.PutPolicy(context.Background(), admin, vmID, p); err != nil {
		w.t.Fatalf("enable JIT: %v", err)
	}
}

func (w *world) request(vmID string, port int, duration string) jit.Grant {
	w.t.Helper()
	r, err := w.ctl.RequestAccess(context.Background(), admin, jit.AccessRequest{Justification: "test",
		VirtualMachines: []jit.VMRequest{{ID: vmID, Ports: []jit.PortRequest{{Number: port, Duration: duration}}}}})
	if err != nil {
		w.t.Fatalf("request: %v", err)
	}
	return r.Grants[0]
}

// grantRules returns the ingress rules of ajar's group for the instance.
func (w *world) grantRules(instance string) []ec2fake.Rule {
	ids := w.f.Groups(awsec2.TagInstance, instance)
	if len(ids) == 0 {
		return nil
	}
	g, _ := w.f.Group(ids[0])
	return g.Ingress
}

// Discovery and recommendations: one instance per case discovery tells
// apart.
func TestDiscovery(t *testing.T) {
	w := newWorld(t)
	f := w.f
	sshOpen := f.AddGroup(region, "vpc-1", "ssh-open", ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "0.0.0.0/0"})
	rdpOpen6 := f.AddGroup(region, "vpc-2", "rdp-open", ec2fake.Rule{Proto: "tcp", From: 3389, To: 3389, CIDR: "::/0"})
	office := f.AddGroup(region, "vpc-1", "office", ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "198.51.100.0/24"})
	all := f.AddGroup(region, "vpc-1", "all-open", ec2fake.Rule{Proto: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"})
	ids := map[string]string{
		"web1":    f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", PublicIP: "192.0.2.10", IPv6: []string{"2001:db8::10"}, Groups: []string{sshOpen, office}}),
		"win1":    f.AddInstance(ec2fake.InstanceSpec{Name: "win1", Platform: "windows", VPC: "vpc-2", PrivateIP: "10.0.2.4", Groups: []string{rdpOpen6}}),
		"quiet":   f.AddInstance(ec2fake.InstanceSpec{Name: "quiet", PrivateIP: "10.0.1.5", Groups: []string{office}, Tags: map[string]string{"ajar:group": "Prod"}}),
		"stopped": f.AddInstance(ec2fake.InstanceSpec{Name: "stopped", State: "stopped", PrivateIP: "10.0.1.6", Groups: []string{all}}),
		"noeni":   f.AddInstance(ec2fake.InstanceSpec{Name: "noeni", NoENI: true}),
		"twin-a":  f.AddInstance(ec2fake.InstanceSpec{Name: "twin", PrivateIP: "10.0.1.7", Groups: []string{office}}),
		"twin-b":  f.AddInstance(ec2fake.InstanceSpec{Name: "twin", PrivateIP: "10.0.1.8", Groups: []string{office}}),
		"other":   f.AddInstance(ec2fake.InstanceSpec{Name: "elsewhere", Region: "us-east-2", PrivateIP: "10.9.0.4"}),
	}
	sum, err := w.syncer.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Backend != jit.BackendAWS || sum.Discovered != 7 || sum.Unsupported != 2 || sum.Exposed != 3 || len(sum.Scopes) != 1 || sum.Scopes[0].ID != region {
		t.Errorf("summary = %+v", sum)
	}
	type row struct{ Group, OS, JIT, Health, Reason string }
	got := map[string]row{}
	vms, _, err := w.ctl.ListVMs(context.Background(), admin, control.VMListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		got[v.Name] = row{v.Group, v.OS, v.Classification.JIT, v.Classification.Health, v.Classification.Reason}
	}
	want := map[string]row{
		"web1":        {"vpc-1", "linux", jit.JITNotConfigured, jit.Unhealthy, "JIT recommended"},
		"win1":        {"vpc-2", "windows", jit.JITNotConfigured, jit.Unhealthy, "JIT recommended"},
		"quiet":       {"prod", "linux", jit.JITNotConfigured, jit.Healthy, ""},
		"stopped":     {"vpc-1", "linux", jit.JITUnsupported, "", "instance is stopped"},
		"noeni":       {"vpc-1", "linux", jit.JITUnsupported, "", awsec2.ReasonNoENI},
		ids["twin-a"]: {"vpc-1", "linux", jit.JITNotConfigured, jit.Healthy, ""},
		ids["twin-b"]: {"vpc-1", "linux", jit.JITNotConfigured, jit.Healthy, ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("VMs (-want +got):\n%s", diff)
	}
	web := w.vm("web1")
	if diff := cmp.Diff([]string{"10.0.1.4", "192.0.2.10", "2001:db8::10"}, web.Addresses); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if web.ExternalID != "arn:aws:ec2:eu-west-1:"+ec2fake.Account+":instance/"+ids["web1"] ||
		web.Labels[awsec2.LabelSecurityGroups] != sshOpen+","+office || web.Labels[awsec2.LabelState] != "running" {
		t.Errorf("web1 = %s %v", web.ExternalID, web.Labels)
	}
	if rec := jit.Recommend(web.VM); len(rec) != 1 || rec[0].Number != 22 {
		t.Errorf("recommended = %+v, want port 22", rec)
	}
	if rec := jit.Recommend(w.vm("win1").VM); len(rec) != 1 || rec[0].Number != 3389 {
		t.Errorf("win1 recommended = %+v, want 3389", rec)
	}

	// A refused listing is reported and leaves the VMs alone; a refused
	// read of the security groups makes the VMs unsupported with that reason.
	f.Refuse("DescribeSecurityGroups")
	sum, err = w.syncer.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := w.vm("web1").Classification; c.JIT != jit.JITUnsupported || !strings.Contains(c.Reason, "lacks permission to describe the security groups") {
		t.Errorf("web1 with groups refused: %+v", c)
	}
	f.Heal("DescribeSecurityGroups")
	f.Refuse("DescribeInstances")
	sum, err = w.syncer.SyncNow(context.Background())
	if err != nil || !strings.Contains(sum.Scopes[0].Error, "ajar lacks permission to describe the instances of region eu-west-1 (UnauthorizedOperation)") {
		t.Errorf("refused listing: %+v %v", sum.Scopes, err)
	}
	f.Heal("DescribeInstances")

	// Terminated: the VM becomes unsupported.
	f.TerminateInstance(ids["quiet"])
	sum, err = w.syncer.SyncNow(context.Background())
	if err != nil || len(sum.Missing) != 1 || sum.Missing[0] != "prod/quiet" {
		t.Errorf("after termination: %+v %v", sum, err)
	}
	if c := w.vm("quiet").Classification; c.JIT != jit.JITUnsupported || c.Reason != cloudsync.ReasonVanished {
		t.Errorf("terminated VM: %+v", c)
	}
}

// The whole story: enable JIT, request, expiry, disable; then a restart
// with an ended grant's rule still in AWS.
func TestEnforcementAndRestart(t *testing.T) {
	w := newWorld(t)
	sg := w.f.AddGroup(region, "vpc-1", "web", ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "0.0.0.0/0", Description: "ssh"},
		ec2fake.Rule{Proto: "tcp", From: 443, To: 443, CIDR: "0.0.0.0/0"})
	id := w.f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	if _, err := w.syncer.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.start()
	web := w.vm("web1")
	w.enableJIT(web.ID, 22)
	eventually(t, "the lock holds", 10*time.Second, func() bool { return !w.f.Reachable(t, id, me, 22, "TCP") })
	if !w.f.Reachable(t, id, me, 443, "TCP") {
		t.Error("443 locked too")
	}
	g := w.request(web.ID, 22, "PT1S")
	eventually(t, "the grant's rule is in", 10*time.Second, func() bool { return w.f.Reachable(t, id, me, 22, "TCP") })
	if w.f.Reachable(t, id, other, 22, "TCP") {
		t.Error("open to someone else")
	}
	eventually(t, "the expired grant's rule is gone", 10*time.Second, func() bool { return len(w.grantRules(id)) == 0 })
	if w.f.Reachable(t, id, me, 22, "TCP") {
		t.Error("open after expiry")
	}
	_ = g

	// Down while a grant ends: back up, its rule goes, the live one stays.
	short := w.request(web.ID, 22, "PT1S")
	eventually(t, "the grant's rule is in", 10*time.Second, func() bool { return len(w.grantRules(id)) == 1 })
	w.stop()
	time.Sleep(time.Until(short.EndTime) + 100*time.Millisecond)
	w.restart()
	if len(w.grantRules(id)) != 1 {
		t.Fatal("the stale rule should still be there before the restart")
	}
	w.start()
	eventually(t, "the stale rule is gone", 10*time.Second, func() bool { return len(w.grantRules(id)) == 0 })

	// Disable JIT: ajar's group goes, the revoked rule comes back exactly.
	if err := w.ctl.DeletePolicy(context.Background(), admin, web.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ajar's group is gone", 10*time.Second, func() bool { return len(w.f.Groups(awsec2.TagManaged, "true")) == 0 })
	eventually(t, "the revoked rule is back", 10*time.Second, func() bool {
		grp, _ := w.f.Group(sg)
		return len(grp.Ingress) == 2 && len(grp.Tags) == 0
	})
	grp, _ := w.f.Group(sg)
	if !slicesContain(grp.Ingress, ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "0.0.0.0/0", Description: "ssh"}) {
		t.Errorf("rules after disabling JIT: %+v", grp.Ingress)
	}
}

func slicesContain(rs []ec2fake.Rule, r ec2fake.Rule) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// A rule limit reached makes the VM unsupported with that reason.
func TestRuleLimitMakesUnsupported(t *testing.T) {
	w := newWorld(t)
	sg := w.f.AddGroup(region, "vpc-1", "web")
	w.f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	w.f.SetRuleLimit(0)
	if _, err := w.syncer.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.start()
	web := w.vm("web1")
	w.enableJIT(web.ID, 22)
	w.request(web.ID, 22, "PT1H")
	eventually(t, "the VM shows the limit", 10*time.Second, func() bool {
		return w.vm("web1").Classification.Reason == awsec2.ReasonRuleLimit
	})
}

// BenchmarkGrantToRule measures, inside ajar against ec2fake, the time
// from a granted request to its allow rule being in AWS, and from the
// grant's end to the rule being gone.
func BenchmarkGrantToRule(b *testing.B) {
	w := newWorld(b)
	sg := w.f.AddGroup(region, "vpc-1", "web")
	id := w.f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	if _, err := w.syncer.SyncNow(context.Background()); err != nil {
		b.Fatal(err)
	}
	w.start()
	web := w.vm("web1")
	w.enableJIT(web.ID, 22)
	eventually(b, "ajar's group is attached", 10*time.Second, func() bool { return len(w.f.Groups(awsec2.TagInstance, id)) == 1 })
	var open, closed []time.Duration
	for b.Loop() {
		t0 := time.Now()
		g := w.request(web.ID, 22, "PT1H")
		eventually(b, "the rule is in", 10*time.Second, func() bool { return w.f.Reachable(b, id, me, 22, "TCP") })
		open = append(open, time.Since(t0))
		// Expiry is a revision bump, as a revocation is: the grant ends now.
		t1 := time.Now()
		if _, err := w.ctl.Revoke(context.Background(), admin, g.ID); err != nil {
			b.Fatal(err)
		}
		eventually(b, "the rule is gone", 10*time.Second, func() bool { return !w.f.Reachable(b, id, me, 22, "TCP") })
		closed = append(closed, time.Since(t1))
	}
	report := func(ds []time.Duration, name string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	report(open, "open")
	report(closed, "close")
}

// An instance terminated while a grant is open: the next reconcile
// deletes ajar's group and puts back what it revoked, and the VM shows
// why it is no longer enforced.
func TestInstanceTerminatedWithGrantOpen(t *testing.T) {
	w := newWorld(t)
	sg := w.f.AddGroup(region, "vpc-1", "solo", ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "0.0.0.0/0"})
	id := w.f.AddInstance(ec2fake.InstanceSpec{Name: "tmp", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	if _, err := w.syncer.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.start()
	vm := w.vm("tmp")
	w.enableJIT(vm.ID, 22)
	w.request(vm.ID, 22, "PT1H")
	eventually(t, "the grant's rule is in", 10*time.Second, func() bool { return len(w.grantRules(id)) == 1 })
	w.f.TerminateInstance(id)
	if _, err := w.syncer.SyncNow(context.Background()); err != nil { // discovery reconciles every VM
		t.Fatal(err)
	}
	eventually(t, "ajar's group is gone and the rule restored", 10*time.Second, func() bool {
		g, _ := w.f.Group(sg)
		return len(w.f.Groups(awsec2.TagManaged, "true")) == 0 && len(g.Ingress) == 1 && len(g.Tags) == 0
	})
	eventually(t, "the VM says why", 10*time.Second, func() bool {
		c := w.vm("tmp").Classification
		return c.Reason == cloudsync.ReasonVanished || strings.Contains(c.Reason, "not found in AWS")
	})
}
