package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// clock is an injected clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t testing.TB) (*control.Control, *clock, *control.Actor, jit.VM) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	ctl := control.New(db, log, clk.now)
	secret, err := ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ctl.Authenticate(ctx, secret, netip.MustParseAddr("198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateGroup(ctx, admin, "prod"); err != nil {
		t.Fatal(err)
	}
	vm, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "db-7", Group: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	return ctl, clk, admin, vm
}

// actor creates a user with one role in one group and returns them as an
// authenticated actor calling from addr.
func actor(t *testing.T, ctl *control.Control, admin *control.Actor, name, role, group, addr string) *control.Actor {
	t.Helper()
	ctx := context.Background()
	if _, err := ctl.CreateUser(ctx, admin, jit.NewUser{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: name, Role: role, Group: group}); err != nil {
		t.Fatal(err)
	}
	tk, err := ctl.CreateToken(ctx, admin, jit.NewToken{User: name})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ctl.Authenticate(ctx, tk.Secret, netip.MustParseAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// enroll enrolls an agent VM into group prod and returns its credential.
func enroll(t *testing.T, ctl *control.Control, admin *control.Actor, name string) jit.Enrolled {
	t.Helper()
	ctx := context.Background()
	et, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	enroller, err := ctl.Authenticate(ctx, et.Secret, netip.MustParseAddr("198.51.100.10"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := ctl.Enroll(ctx, enroller, jit.Enrollment{Name: name, OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func events(t *testing.T, ctl *control.Control, a *control.Actor, op string) []jit.Event {
	t.Helper()
	ev, _, err := ctl.ListEvents(context.Background(), a, control.EventListFilter{Operation: op})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestExpiryWithInjectedClock moves the clock instead of sleeping: a grant
// expires exactly when its end time is reached, with that end time, once.
func TestExpiryWithInjectedClock(t *testing.T) {
	ctl, clk, admin, vm := setup(t)
	ctx := context.Background()
	req, err := ctl.RequestAccess(ctx, admin, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := req.Grants[0]
	clk.add(59*time.Minute + 59*time.Second)
	if n, err := ctl.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("a second before the end: expired %d, %v", n, err)
	}
	st, err := ctl.DesiredState(ctx, admin, vm.ID)
	if err != nil || len(st.Grants) != 1 || st.Grants[0].RemainingSeconds != 1 {
		t.Fatalf("desired state a second before the end: %+v %v", st, err)
	}
	clk.add(time.Second)
	if n, err := ctl.ExpireDue(ctx); err != nil || n != 1 {
		t.Fatalf("at the end: expired %d, %v", n, err)
	}
	if n, _ := ctl.ExpireDue(ctx); n != 0 {
		t.Fatalf("expired again: %d", n)
	}
	gs, _, err := ctl.ListGrants(ctx, admin, control.GrantListFilter{VMID: vm.ID})
	if err != nil || len(gs) != 1 || gs[0].Status != jit.GrantExpired || !gs[0].EndedAt.Equal(g.EndTime) {
		t.Fatalf("grant after expiry: %+v %v", gs, err)
	}
	if ev := events(t, ctl, admin, jit.OpGrantExpire); len(ev) != 1 {
		t.Fatalf("%d grant.expire events, want 1", len(ev))
	}
}

// TestAgentPresence logs one disconnect per silence and one connect when
// the agent comes back.
func TestAgentPresence(t *testing.T) {
	ctl, clk, admin, _ := setup(t)
	ctx := context.Background()
	e := enroll(t, ctl, admin, "web-1")
	agent, err := ctl.Authenticate(ctx, e.Secret, netip.MustParseAddr("198.51.100.10"))
	if err != nil {
		t.Fatal(err)
	}
	report := func() {
		if err := ctl.Report(ctx, agent, jit.Report{Enforceable: true}); err != nil {
			t.Fatal(err)
		}
	}
	report()
	clk.add(jit.AgentOfflineAfter + time.Second)
	for range 2 {
		if _, err := ctl.MarkSilentAgents(ctx); err != nil {
			t.Fatal(err)
		}
	}
	v, err := ctl.GetVM(ctx, admin, e.VM.ID)
	if err != nil || v.Classification.JIT != jit.JITUnsupported || v.Classification.Reason != "agent offline" {
		t.Fatalf("silent agent's VM: %+v %v", v.Classification, err)
	}
	report()
	if d, c := events(t, ctl, admin, jit.OpAgentDisconnect), events(t, ctl, admin, jit.OpAgentConnect); len(d) != 1 || len(c) != 2 {
		t.Fatalf("%d disconnect and %d connect events, want 1 and 2", len(d), len(c))
	}
}

// TestOffboarding: deleting a user ends their open grants; deleting a VM
// ends its agent's credential.
func TestOffboarding(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	bob := actor(t, ctl, admin, "bob", jit.RoleRequester, "prod", "198.51.100.8")
	if _, err := ctl.RequestAccess(ctx, bob, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteUser(ctx, admin, "bob"); err != nil {
		t.Fatal(err)
	}
	gs, _, err := ctl.ListGrants(ctx, admin, control.GrantListFilter{User: "bob"})
	if err != nil || len(gs) != 1 || gs[0].Status != jit.GrantRevoked {
		t.Fatalf("bob's grant after deleting bob: %+v %v", gs, err)
	}
	st, err := ctl.DesiredState(ctx, admin, vm.ID)
	if err != nil || len(st.Grants) != 0 {
		t.Fatalf("desired state still opens bob's grant: %+v %v", st, err)
	}

	e := enroll(t, ctl, admin, "web-9")
	if err := ctl.DeleteVM(ctx, admin, e.VM.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, e.Secret, netip.MustParseAddr("198.51.100.10")); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("agent credential of a deleted VM: %v, want unauthorized", err)
	}
}

// TestCloudVMsOnlyByAdmins: a jit-admin cannot claim a cloud resource by
// registering a VM with its external id; an admin cannot register it twice.
func TestCloudVMsOnlyByAdmins(t *testing.T) {
	ctl, _, admin, _ := setup(t)
	ctx := context.Background()
	if _, err := ctl.CreateGroup(ctx, admin, "evil"); err != nil {
		t.Fatal(err)
	}
	mallory := actor(t, ctl, admin, "mallory", jit.RoleJITAdmin, "evil", "198.51.100.66")
	arm := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web1"
	if _, err := ctl.CreateVM(ctx, mallory, jit.NewVM{Name: "copy", Group: "evil", Backend: jit.BackendAzure, ExternalID: arm}); jit.ErrorCode(err) != jit.EForbidden {
		t.Fatalf("jit-admin registering an Azure VM: %v, want forbidden", err)
	}
	if _, err := ctl.CreateVM(ctx, mallory, jit.NewVM{Name: "plain", Group: "evil"}); err != nil {
		t.Fatalf("jit-admin registering an agent VM: %v", err)
	}
	if _, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "web1", Group: "prod", Backend: jit.BackendAzure, ExternalID: arm}); err != nil {
		t.Fatal(err)
	}
	_, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "web1-again", Group: "evil", Backend: jit.BackendAzure, ExternalID: strings.ToUpper(arm)})
	if jit.ErrorCode(err) != jit.EConflict || jit.ErrorTarget(err) != "externalId" {
		t.Fatalf("second VM with the same external id: %v, want conflict on externalId", err)
	}
}

// TestHeadLog checks that the server logs the activity log's head as an
// anchor that verifies.
func TestHeadLog(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctl := control.New(db, log, time.Now)
	secret, err := ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ctl.RunHeadLog(ctx, time.Hour); close(done) }()
	var anchor string
	for deadline := time.Now().Add(5 * time.Second); anchor == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, a, ok := strings.Cut(buf.String(), "anchor="); ok {
			anchor = strings.Fields(a)[0]
		}
	}
	cancel()
	<-done
	an, err := jit.ParseAnchor(anchor)
	if err != nil {
		t.Fatalf("no anchor logged: %v\n%s", err, buf.String())
	}
	admin, err := ctl.Authenticate(context.Background(), secret, netip.MustParseAddr("198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ctl.VerifyAnchored(context.Background(), admin, &an)
	if err != nil || !v.OK {
		t.Fatalf("the logged anchor does not verify: %+v %v", v, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestNewIDsSortByTime checks that identifiers are 32 hexadecimal digits,
// distinct, and that one made in a later millisecond sorts after one made
// earlier (new rows then go to the end of the indexes on their ids).
func TestNewIDsSortByTime(t *testing.T) {
	seen := map[string]bool{}
	prev := control.NewID()
	for range 20 {
		time.Sleep(2 * time.Millisecond)
		id := control.NewID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 32 hexadecimal digits", id)
		}
		if seen[id] || id <= prev {
			t.Fatalf("id %q made after %q does not sort after it", id, prev)
		}
		seen[id], prev = true, id
	}
}
