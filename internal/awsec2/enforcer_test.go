package awsec2

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajarhq/ajar/internal/awsec2/ec2fake"
	"github.com/ajarhq/ajar/internal/enforce/enforcetest"
	"github.com/ajarhq/ajar/internal/jit"
)

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

// The compliance suite, with the instance's own security group opening
// the locked port to the internet (revoked and restored, opted in) and,
// in a second layout, a group that opens it only to an office range.
func TestEnforcerSuite(t *testing.T) {
	layouts := []struct {
		name   string
		revoke bool
		setUp  func(f *ec2fake.EC2) string
	}{
		{"own group open to the internet, revoke opted in", true, func(f *ec2fake.EC2) string {
			sg := f.AddGroup(region, "vpc-1", "web",
				open("tcp", 8080, "0.0.0.0/0"), open("udp", 8080, "0.0.0.0/0"), open("tcp", 8443, "0.0.0.0/0"), open("tcp", 8080, "::/0"))
			return f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
		}},
		{"open to the internet through a second group", true, func(f *ec2fake.EC2) string {
			base := f.AddGroup(region, "vpc-1", "base", open("tcp", 8443, "0.0.0.0/0"))
			app := f.AddGroup(region, "vpc-1", "app", ec2fake.Rule{Proto: "tcp", From: 8080, To: 8080, CIDR: "0.0.0.0/0", Description: "app from anywhere"},
				open("udp", 8080, "0.0.0.0/0"))
			return f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{base, app}})
		}},
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			enforcetest.Run(t, func(t *testing.T) enforcetest.Harness {
				f := ec2fake.New(t)
				id := l.setUp(f)
				return enforcetest.Harness{
					Enforcer:  NewEnforcer(newClient(t, f), l.revoke),
					VM:        awsVM("web1", id),
					SourceA:   netip.MustParseAddr("203.0.113.10"),
					SourceB:   netip.MustParseAddr("198.51.100.20"),
					SourceNet: netip.MustParsePrefix("203.0.113.0/24"),
					Port:      8080,
					OtherPort: 8443,
					Reachable: func(t *testing.T, src netip.Addr, port int, proto string) bool {
						return f.Reachable(t, id, src, port, proto)
					},
				}
			})
		})
	}
}

func groupRules(t *testing.T, f *ec2fake.EC2, id string) []ec2fake.Rule {
	t.Helper()
	g, ok := f.Group(id)
	if !ok {
		t.Fatalf("no security group %s", id)
	}
	return g.Ingress
}

// A group shared with another instance is never changed, even opted in:
// the lock fails with a reason naming the rule; a group with narrower
// sources is left alone and listed as shadowing.
func TestSharedGroup(t *testing.T) {
	f := ec2fake.New(t)
	shared := f.AddGroup(region, "vpc-1", "shared-ssh", open("tcp", 22, "0.0.0.0/0"), open("tcp", 22, "198.51.100.0/24"))
	id := f.AddInstance(ec2fake.InstanceSpec{Name: "web1", PrivateIP: "10.0.1.4", Groups: []string{shared}})
	f.AddInstance(ec2fake.InstanceSpec{Name: "web2", PrivateIP: "10.0.1.5", Groups: []string{shared}})
	before := groupRules(t, f, shared)
	e := NewEnforcer(newClient(t, f), true)
	vm := awsVM("web1", id)
	ctx := context.Background()

	err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7")))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), shared+"/tcp 22 from 0.0.0.0/0 (group shared with other network interfaces)") {
		t.Fatalf("apply with a shared open group: %v", err)
	}
	if got := groupRules(t, f, shared); !slices.Equal(got, before) {
		t.Errorf("shared group changed: %v -> %v", before, got)
	}
	// The grant still got its rule: the grant works even if the lock cannot hold.
	if !f.Reachable(t, id, netip.MustParseAddr("203.0.113.7"), 22, "TCP") {
		t.Error("grant not allowed")
	}
	sh, err := e.Shadowed(ctx, vm)
	if err != nil || !slices.Equal(sh, []string{shared + "/tcp 22 from 0.0.0.0/0", shared + "/tcp 22 from 198.51.100.0/24"}) {
		t.Errorf("shadowed = %v, %v", sh, err)
	}

	// Without the opt-in, an exclusive group is not changed either.
	own := f.AddGroup(region, "vpc-1", "db-only", open("tcp", 5432, "0.0.0.0/0"), open("tcp", 22, "::/0"))
	db := f.AddInstance(ec2fake.InstanceSpec{Name: "db1", PrivateIP: "10.0.1.6", Groups: []string{own}})
	e2 := NewEnforcer(newClient(t, f), false)
	err = e2.Apply(ctx, awsVM("db1", db), state(lock(22)))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "--aws-revoke-shadowing") {
		t.Fatalf("apply without opt-in: %v", err)
	}
	if got := groupRules(t, f, own); len(got) != 2 {
		t.Errorf("exclusive group changed without opt-in: %v", got)
	}
	// A rule that opens more than the locked ports is not revoked.
	wide := f.AddGroup(region, "vpc-1", "wide", ec2fake.Rule{Proto: "tcp", From: 0, To: 65535, CIDR: "0.0.0.0/0"})
	w := f.AddInstance(ec2fake.InstanceSpec{Name: "w1", PrivateIP: "10.0.1.7", Groups: []string{wide}})
	err = e.Apply(ctx, awsVM("w1", w), state(lock(22)))
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "opens more than the locked ports") {
		t.Fatalf("apply with a wide rule: %v", err)
	}
	if got := groupRules(t, f, wide); len(got) != 1 {
		t.Errorf("wide group changed: %v", got)
	}
	// Removing leaves every group as it was, and ajar's gone.
	for _, x := range []struct{ vm, sg string }{{id, shared}, {db, own}, {w, wide}} {
		if err := e.Remove(ctx, awsVM("x", x.vm)); err != nil {
			t.Fatal(err)
		}
		if got := f.PrimaryGroups(x.vm); !slices.Equal(got, []string{x.sg}) {
			t.Errorf("groups after remove: %v", got)
		}
	}
	if got := f.Groups(TagManaged, "true"); len(got) != 0 {
		t.Errorf("ajar's groups left: %v", got)
	}
}

// The revoked rule is recorded with its description and put back exactly.
func TestRevokeRestoresExactly(t *testing.T) {
	f := ec2fake.New(t)
	sg := f.AddGroup(region, "vpc-1", "bastion",
		ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "0.0.0.0/0", Description: "ssh from anywhere (ticket OPS-1)"},
		ec2fake.Rule{Proto: "tcp", From: 22, To: 22, CIDR: "::/0"},
		open("tcp", 443, "0.0.0.0/0"))
	id := f.AddInstance(ec2fake.InstanceSpec{Name: "bastion", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	before := groupRules(t, f, sg)
	e := NewEnforcer(newClient(t, f), true)
	vm := awsVM("bastion", id)
	ctx := context.Background()
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil {
		t.Fatal(err)
	}
	if got := groupRules(t, f, sg); len(got) != 1 || got[0].From != 443 {
		t.Fatalf("after lock: %v", got)
	}
	g, _ := f.Group(sg)
	if g.Tags[TagRevokedFor] != id {
		t.Errorf("tags = %v", g.Tags)
	}
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil { // idempotent
		t.Fatal(err)
	}
	// The lock moves to 3389: 22's rules come back.
	if err := e.Apply(ctx, vm, state(lock(3389))); err != nil {
		t.Fatal(err)
	}
	if got := groupRules(t, f, sg); !sameRules(got, before) {
		t.Errorf("after the lock moved: %v, want %v", got, before)
	}
	if err := e.Apply(ctx, vm, state(lock(22))); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatal(err)
	}
	g, _ = f.Group(sg)
	if !sameRules(g.Ingress, before) || len(g.Tags) != 0 {
		t.Errorf("after remove: rules %v tags %v, want %v and no tags", g.Ingress, g.Tags, before)
	}
}

func sameRules(a, b []ec2fake.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Throttling is retried by the SDK; a new group that EC2 does not show
// yet is waited for.
func TestThrottlingAndEventualConsistency(t *testing.T) {
	f := ec2fake.New(t)
	sg := f.AddGroup(region, "vpc-1", "app", open("tcp", 443, "0.0.0.0/0"))
	id := f.AddInstance(ec2fake.InstanceSpec{Name: "app1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	e := NewEnforcer(newClient(t, f), false)
	f.Fail("DescribeInstances", "RequestLimitExceeded", 2)
	f.Fail("AuthorizeSecurityGroupIngress", "RequestLimitExceeded", 1)
	f.SetLag(3)
	err := e.Apply(context.Background(), awsVM("app1", id), state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7/32")))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !f.Reachable(t, id, netip.MustParseAddr("203.0.113.7"), 22, "TCP") {
		t.Error("grant not in place")
	}
	own := f.Groups(TagInstance, id)
	if len(own) != 1 || !slices.Equal(f.PrimaryGroups(id), []string{sg, own[0]}) {
		t.Fatalf("ajar's group %v, the ENI's groups %v", own, f.PrimaryGroups(id))
	}
	if g, _ := f.Group(own[0]); len(g.Egress) != 0 || g.Name != "ajar-"+id || g.Tags[TagManaged] != "true" || g.Tags[TagLock] != "*:22" {
		t.Errorf("ajar's group: %+v", g)
	}
	if n := f.Calls("DescribeInstances"); n != 3 {
		t.Errorf("DescribeInstances called %d times, want 3 (2 throttled)", n)
	}
	// Throttled beyond the retryer's attempts: a passing failure.
	f.Fail("DescribeInstances", "RequestLimitExceeded", -1)
	err = e.Apply(context.Background(), awsVM("app1", id), state(lock(22)))
	if jit.ErrorCode(err) != jit.EUnavailable || !strings.Contains(jit.ErrorMessage(err), "RequestLimitExceeded") {
		t.Errorf("apply while throttled: %v", err)
	}
}

// A full rule limit makes the VM unsupported with that reason.
func TestRuleLimit(t *testing.T) {
	f := ec2fake.New(t)
	sg := f.AddGroup(region, "vpc-1", "app")
	id := f.AddInstance(ec2fake.InstanceSpec{Name: "app1", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	f.SetRuleLimit(2)
	e := NewEnforcer(newClient(t, f), false)
	err := e.Apply(context.Background(), awsVM("app1", id), state(lock(22),
		grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7"), grantRule("g2", 22, jit.ProtoTCP, "203.0.113.8"), grantRule("g3", 22, jit.ProtoTCP, "203.0.113.9")))
	if jit.ErrorCode(err) != jit.EConflict || jit.ErrorMessage(err) != ReasonRuleLimit {
		t.Fatalf("apply over the limit: %v", err)
	}
}

// An instance terminated while a grant is open: Apply says it is gone,
// Remove deletes ajar's group and restores what was revoked.
func TestInstanceDeleted(t *testing.T) {
	f := ec2fake.New(t)
	sg := f.AddGroup(region, "vpc-1", "solo", open("tcp", 22, "0.0.0.0/0"))
	id := f.AddInstance(ec2fake.InstanceSpec{Name: "tmp", PrivateIP: "10.0.1.4", Groups: []string{sg}})
	e := NewEnforcer(newClient(t, f), true)
	vm := awsVM("tmp", id)
	ctx := context.Background()
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7"))); err != nil {
		t.Fatal(err)
	}
	f.TerminateInstance(id)
	if err := e.Apply(ctx, vm, state(lock(22), grantRule("g1", 22, jit.ProtoTCP, "203.0.113.7"))); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("apply on a terminated instance: %v", err)
	}
	if err := e.Remove(ctx, vm); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got := f.Groups(TagManaged, "true"); len(got) != 0 {
		t.Errorf("ajar's groups left: %v", got)
	}
	if got := groupRules(t, f, sg); len(got) != 1 || got[0].CIDR != "0.0.0.0/0" {
		t.Errorf("rule not restored: %v", got)
	}
}

// Each region is asked with a request signed for it; an instance is
// found in its own region only, and its ARN names that region.
func TestDiscoverRegions(t *testing.T) {
	f := ec2fake.New(t)
	f.AddInstance(ec2fake.InstanceSpec{Name: "west", PrivateIP: "10.0.1.4"})
	east := f.AddInstance(ec2fake.InstanceSpec{Name: "east", Region: "us-east-2", PrivateIP: "10.9.0.4"})
	c := newClient(t, f)
	got, err := c.Discover(context.Background(), "us-east-2", nil)
	if err != nil || len(got) != 1 || got[0].VM.Name != "east" ||
		got[0].VM.ExternalID != "arn:aws:ec2:us-east-2:"+ec2fake.Account+":instance/"+east || got[0].VM.Labels[LabelRegion] != "us-east-2" {
		t.Fatalf("us-east-2: %+v, %v", got, err)
	}
	filters, err := ParseFilters("tag:Name=west")
	if err != nil {
		t.Fatal(err)
	}
	got, err = c.Discover(context.Background(), region, filters)
	if err != nil || len(got) != 1 || got[0].VM.Name != "west" {
		t.Fatalf("eu-west-1 filtered: %+v, %v", got, err)
	}
	got, err = c.Discover(context.Background(), region, []types.Filter{{Name: aws.String("tag:Name"), Values: []string{"nobody"}}})
	if err != nil || len(got) != 0 {
		t.Fatalf("no match: %+v, %v", got, err)
	}
}
