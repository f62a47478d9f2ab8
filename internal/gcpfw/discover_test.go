package gcpfw

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/ajarhq/ajar/internal/gcpfw/computefake"
	"github.com/ajarhq/ajar/internal/jit"
)

// world adds instances in two zones (and an empty third) and the rules
// that make some of them exposed.
func world(f *fakeGCP) {
	const z2 = "europe-west1-c"
	f.AddZone(project, "europe-west1-d")
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web1", InternalIP: "10.0.1.4", ExternalIP: "203.0.113.4",
		IPv6: "2001:db8::4", Tags: []string{"ssh"}})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "web2", InternalIP: "10.0.1.5", Tags: []string{"web"}})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "win1", InternalIP: "10.0.1.6", Windows: true,
		ServiceAccount: "win@shop-prod.iam.gserviceaccount.com"})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: z2, Name: "batch1", InternalIP: "10.0.2.4", Status: "TERMINATED", Tags: []string{"ssh"}})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: z2, Name: "db1", InternalIP: "10.0.2.5", Tags: []string{"ssh", "db"}})

	f.AddFirewall(project, rule("allow-ssh-anywhere", 1000, true, "0.0.0.0/0", []string{"22"}, "ssh"))
	f.AddFirewall(project, rule("deny-ssh-db", 900, false, "0.0.0.0/0", []string{"22"}, "db"))
	rdp := rule("allow-rdp-v6", 1000, true, "::/0", []string{"3389", "5985-5986"})
	rdp.TargetServiceAccounts = []string{"win@shop-prod.iam.gserviceaccount.com"}
	f.AddFirewall(project, rdp)
	f.AddFirewall(project, rule("allow-ssh-office", 100, true, "198.51.100.0/24", []string{"22"}, "web"))
	off := rule("allow-all-disabled", 10, true, "0.0.0.0/0", nil)
	off.Disabled = proto.Bool(true)
	f.AddFirewall(project, off)
	egress := rule("egress-anywhere", 10, true, "0.0.0.0/0", []string{"22"})
	egress.Direction = proto.String("EGRESS")
	f.AddFirewall(project, egress)
}

func names(ds []jit.Discovered) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.VM.Labels[LabelZone]+"/"+d.VM.Name)
	}
	return out
}

func byName(ds []jit.Discovered, name string) jit.Discovered {
	for _, d := range ds {
		if d.VM.Name == name {
			return d
		}
	}
	return jit.Discovered{}
}

func tcp(ports ...int) []jit.Socket {
	var out []jit.Socket
	for _, p := range ports {
		out = append(out, jit.Socket{Protocol: jit.ProtoTCP, Port: p})
	}
	return out
}

func TestDiscoverAggregated(t *testing.T) {
	f := newFake(t)
	f.PageSize = 2 // three pages of instances, two of firewalls and more
	world(f)
	ds, err := f.client().Discover(context.Background(), project, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"europe-west1-b/web1", "europe-west1-b/web2", "europe-west1-b/win1", "europe-west1-c/batch1", "europe-west1-c/db1"}
	if got := names(ds); !slices.Equal(got, want) {
		t.Fatalf("discovered %v, want %v", got, want)
	}
	if f.Calls("GET", "aggregated") != 3 {
		t.Errorf("aggregated list pages: %d, want 3", f.Calls("GET", "aggregated"))
	}
	if f.Calls("GET", "firewalls") != 3 {
		t.Errorf("firewall pages read: %d, want 3 (6 rules by 2, read once for the project)", f.Calls("GET", "firewalls"))
	}

	web1 := byName(ds, "web1")
	inst := f.Instance(project, zone, "web1")
	wantVM := jit.VM{Name: "web1", Group: project, Backend: jit.BackendGCP, OS: "linux",
		ExternalID: "projects/shop-prod/zones/europe-west1-b/instances/web1",
		Addresses:  []string{"10.0.1.4", "203.0.113.4", "2001:db8::4"},
		Labels: map[string]string{LabelProject: project, LabelZone: zone, LabelInstanceID: strconv.FormatUint(inst.GetId(), 10),
			LabelNetworks: "projects/shop-prod/global/networks/default", LabelStatus: "RUNNING", LabelTags: "ssh"}}
	if diff := cmp.Diff(wantVM, web1.VM); diff != "" {
		t.Errorf("web1 (-want +got):\n%s", diff)
	}
	if !web1.Report.Enforceable || !slices.Equal(web1.Report.Exposed, tcp(22)) {
		t.Errorf("web1 report %+v, want enforceable, 22 exposed", web1.Report)
	}

	cases := []struct {
		name        string
		exposed     []jit.Socket
		enforceable bool
		reason      string
		os          string
	}{
		{"web2", nil, true, "", "linux"},                     // office only
		{"win1", tcp(3389, 5985, 5986), true, "", "windows"}, // by service account, from ::/0
		{"batch1", tcp(22), false, "instance is terminated", "linux"},
		{"db1", nil, true, "", "linux"}, // a deny from anywhere comes first
	}
	for _, c := range cases {
		d := byName(ds, c.name)
		if !slices.Equal(d.Report.Exposed, c.exposed) || d.Report.Enforceable != c.enforceable || d.Report.Reason != c.reason || d.VM.OS != c.os {
			t.Errorf("%s: exposed %v enforceable %v reason %q os %q; want %v %v %q %q", c.name,
				d.Report.Exposed, d.Report.Enforceable, d.Report.Reason, d.VM.OS, c.exposed, c.enforceable, c.reason, c.os)
		}
	}
}

func TestDiscoverZones(t *testing.T) {
	f := newFake(t)
	f.PageSize = 1
	world(f)
	ds, err := f.client().Discover(context.Background(), project, []string{"europe-west1-c"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(ds), []string{"europe-west1-c/batch1", "europe-west1-c/db1"}; !slices.Equal(got, want) {
		t.Errorf("discovered %v, want %v", got, want)
	}
	if f.Calls("GET", "aggregated") != 0 || f.Calls("GET", "instances") != 2 {
		t.Errorf("aggregated %d, zone list pages %d; want 0 and 2", f.Calls("GET", "aggregated"), f.Calls("GET", "instances"))
	}
}

func TestDiscoverSharedVPCAndUnreadableRules(t *testing.T) {
	f := newFake(t)
	host := "net-host"
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "app1", InternalIP: "10.8.0.2", Network: "projects/" + host + "/global/networks/shared"})
	f.AddInstance(computefake.InstanceSpec{Project: project, Zone: zone, Name: "app2", InternalIP: "10.0.0.2"})
	fw := rule("allow-ssh", 1000, true, "0.0.0.0/0", []string{"22"})
	fw.Network = proto.String("shared")
	f.AddFirewall(host, fw)
	ds, err := f.client().Discover(context.Background(), project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := byName(ds, "app1"); !slices.Equal(d.Report.Exposed, tcp(22)) || d.VM.Labels[LabelNetworks] != "projects/net-host/global/networks/shared" {
		t.Errorf("app1 in the Shared VPC: %+v %v", d.Report, d.VM.Labels)
	}
	if d := byName(ds, "app2"); len(d.Report.Exposed) != 0 {
		t.Errorf("app2 exposed by another network's rule: %v", d.Report.Exposed)
	}

	// The host project's rules cannot be read: its instances are
	// unsupported, saying why; the others are not.
	f.Fail("GET", "/projects/"+host+"/global/firewalls", -1, http.StatusForbidden, "forbidden", "Required 'compute.firewalls.list' permission for 'projects/net-host'")
	ds, err = f.client().Discover(context.Background(), project, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := byName(ds, "app1")
	if d.Report.Enforceable || d.Report.Reason != "ajar lacks permission to list the firewall rules of project net-host (forbidden)" {
		t.Errorf("app1 with unreadable rules: %+v", d.Report)
	}
	if !byName(ds, "app2").Report.Enforceable {
		t.Error("app2 unsupported because of another project")
	}
}

func TestDiscoverErrors(t *testing.T) {
	f := newFake(t)
	world(f)
	c := f.client()
	f.Fail("GET", "/aggregated/instances", -1, http.StatusForbidden, "forbidden", "Required 'compute.instances.list' permission for 'projects/shop-prod'")
	_, err := c.Discover(context.Background(), project, nil)
	if jit.ErrorCode(err) != jit.EForbidden || jit.ErrorMessage(err) != "ajar lacks permission to list the instances of project shop-prod (forbidden)" {
		t.Errorf("refused listing: %v", err)
	}
	f.Heal()
	f.Throttle("/aggregated/instances", 2)
	f.Throttle("/global/firewalls", 2)
	ds, err := c.Discover(context.Background(), project, nil)
	if err != nil || len(ds) != 5 {
		t.Errorf("throttled discovery: %d found, %v", len(ds), err)
	}
	_, err = c.Discover(context.Background(), "no-such-project", []string{"nowhere-1a"})
	if err != nil {
		t.Errorf("an empty zone: %v", err)
	}
}
