package control_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// grantOf reads one grant from the store.
func grantOf(t *testing.T, ctl *control.Control, id string) jit.Grant {
	t.Helper()
	var g jit.Grant
	err := ctl.Store().View(context.Background(), func(tx store.Tx) error {
		var err error
		g, err = tx.GetGrant(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// ask requests one port on vm for source ("" = the caller's address).
func ask(t *testing.T, ctl *control.Control, a *control.Actor, vmID string, port int, source, duration string) jit.Grant {
	t.Helper()
	r, err := ctl.RequestAccess(context.Background(), a, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vmID,
		Ports: []jit.PortRequest{{Number: port, AllowedSourceAddressPrefix: source, Duration: duration}}}}})
	if err != nil {
		t.Fatalf("request port %d from %q: %v", port, source, err)
	}
	return r.Grants[0]
}

// desiredGrants returns the grants of vm's desired state, by id, with the
// seconds each has left.
func desiredGrants(t *testing.T, ctl *control.Control, a *control.Actor, vmID string) map[string]int64 {
	t.Helper()
	st, err := ctl.DesiredState(context.Background(), a, vmID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, g := range st.Grants {
		out[g.ID] = g.RemainingSeconds
	}
	return out
}

// eventsOf returns the activity events f selects, read from the store.
func eventsOf(t *testing.T, ctl *control.Control, f store.EventFilter) []jit.Event {
	t.Helper()
	var out []jit.Event
	err := ctl.Store().View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.ListEvents(f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grantEvents returns the details of the events of op, by grant id.
func grantEvents(t *testing.T, ctl *control.Control, op string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, e := range eventsOf(t, ctl, store.EventFilter{Operation: op}) {
		var d map[string]any
		if err := json.Unmarshal(e.Details, &d); err != nil {
			t.Fatal(err)
		}
		id, _ := d["grant"].(string)
		if _, dup := out[id]; dup {
			t.Errorf("two %s events for grant %s", op, id)
		}
		out[id] = d
	}
	return out
}

// causeOp returns the operation an event's details name as its cause.
func causeOp(d map[string]any) string {
	c, _ := d["cause"].(map[string]any)
	op, _ := c["operation"].(string)
	return op
}

// TestPolicyChangeFollowsGrants: narrowing a policy ends the grants it now
// forbids (source, port) and shortens those longer than its new maximum,
// each with one event naming the change; the desired state follows.
func TestPolicyChangeFollowsGrants(t *testing.T) {
	ctl, clk, admin, vm := setup(t)
	ctx := context.Background()
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"},
		{Number: 3389, Protocol: "*", MaxRequestAccessDuration: "PT3H"},
	}}); err != nil {
		t.Fatal(err)
	}
	bob := actor(t, ctl, admin, "bob", jit.RoleRequesterAnySource, "prod", "198.51.100.8")
	anyw := ask(t, ctl, bob, vm.ID, 22, "0.0.0.0/0", "PT3H")
	long := ask(t, ctl, bob, vm.ID, 22, "", "PT3H")
	short := ask(t, ctl, bob, vm.ID, 22, "198.51.100.9", "PT30M")
	rdp := ask(t, ctl, bob, vm.ID, 3389, "", "PT1H")
	clk.add(10 * time.Minute)

	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"198.51.100.0/24"}, MaxRequestAccessDuration: "PT1H"},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		g      jit.Grant
		status string
		end    time.Time
	}{
		{anyw, jit.GrantRevoked, anyw.EndTime},
		{rdp, jit.GrantRevoked, rdp.EndTime},
		{long, jit.GrantActive, long.StartTime.Add(time.Hour)},
		{short, jit.GrantActive, short.EndTime},
	} {
		if g := grantOf(t, ctl, c.g.ID); g.Status != c.status || !g.EndTime.Equal(c.end) {
			t.Errorf("grant %d from %s after narrowing: %s ending %v, want %s ending %v", g.Port, g.Source, g.Status, g.EndTime, c.status, c.end)
		}
	}
	want := map[string]int64{long.ID: 50 * 60, short.ID: 20 * 60}
	if got := desiredGrants(t, ctl, admin, vm.ID); !equalMaps(got, want) {
		t.Errorf("desired grants after narrowing = %v, want %v", got, want)
	}
	revoked := grantEvents(t, ctl, jit.OpGrantRevoke)
	shortened := grantEvents(t, ctl, jit.OpGrantShorten)
	if len(revoked) != 2 || len(shortened) != 1 {
		t.Fatalf("%d revoke and %d shorten events, want 2 and 1", len(revoked), len(shortened))
	}
	for id, d := range map[string]map[string]any{anyw.ID: revoked[anyw.ID], rdp.ID: revoked[rdp.ID], long.ID: shortened[long.ID]} {
		if causeOp(d) != jit.OpPolicyUpdate {
			t.Errorf("event of grant %s does not name the policy update as its cause: %v", id, d)
		}
	}
	if r, _ := revoked[anyw.ID]["reason"].(string); !strings.Contains(r, "0.0.0.0/0") {
		t.Errorf("revocation reason %q does not name the source", r)
	}
	if r, _ := revoked[rdp.ID]["reason"].(string); !strings.Contains(r, "3389") {
		t.Errorf("revocation reason %q does not name the port", r)
	}
	// The change comes first in the log, then what it did.
	all := eventsOf(t, ctl, store.EventFilter{})
	var tail []string
	for _, e := range all[len(all)-4:] {
		tail = append(tail, e.Operation)
	}
	if tail[0] != jit.OpPolicyUpdate {
		t.Errorf("last events %v, want the policy update before its grants' events", tail)
	}
	// The same request as before is refused now.
	if _, err := ctl.RequestAccess(ctx, bob, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID,
		Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "0.0.0.0/0"}}}}}); jit.ErrorCode(err) != jit.EInvalid {
		t.Fatalf("request outside the new policy: %v", err)
	}

	// A maximum already past ends the grant at once.
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"198.51.100.0/24"}, MaxRequestAccessDuration: "PT5M"},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []jit.Grant{long, short} {
		if g := grantOf(t, ctl, g.ID); g.Status != jit.GrantRevoked {
			t.Errorf("grant from %s under a 5 minute maximum 10 minutes in: %s", g.Source, g.Status)
		}
	}
	if got := desiredGrants(t, ctl, admin, vm.ID); len(got) != 0 {
		t.Errorf("desired grants under a past maximum = %v, want none", got)
	}
	if n, err := ctl.ExpireDue(ctx); err != nil || n != 0 {
		t.Errorf("expirer after the change: %d ended, %v", n, err)
	}
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPolicyUpdateKeepsAllowedGrants: a change that still allows a grant
// leaves it alone, also one asked to end within a second past the maximum
// (as an end time may).
func TestPolicyUpdateKeepsAllowedGrants(t *testing.T) {
	ctl, clk, admin, vm := setup(t)
	ctx := context.Background()
	end := clk.now().Add(3*time.Hour + 500*time.Millisecond).Format(time.RFC3339Nano)
	r, err := ctl.RequestAccess(ctx, admin, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID,
		Ports: []jit.PortRequest{{Number: 22, EndTimeUTC: end}}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := r.Grants[0]
	clk.add(time.Minute)
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"},
		{Number: 3389, Protocol: "TCP", MaxRequestAccessDuration: "PT1H"},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := grantOf(t, ctl, g.ID); got.Status != jit.GrantActive || !got.EndTime.Equal(g.EndTime) {
		t.Errorf("grant after a change that still allows it: %s ending %v, want active ending %v", got.Status, got.EndTime, g.EndTime)
	}
	for _, op := range []string{jit.OpGrantShorten, jit.OpGrantRevoke} {
		if n := len(eventsOf(t, ctl, store.EventFilter{Operation: op})); n != 0 {
			t.Errorf("%d %s events", n, op)
		}
	}
}

// TestAzurePolicyChangeFollowsGrants: a policy changed through the
// Azure-compatible API's operation re-checks grants the same way, and its
// events name the Azure policy.
func TestAzurePolicyChangeFollowsGrants(t *testing.T) {
	ctl, clk, admin, vm := setup(t)
	ctx := context.Background()
	bob := actor(t, ctl, admin, "bob", jit.RoleRequesterAnySource, "prod", "198.51.100.8")
	anyw := ask(t, ctl, bob, vm.ID, 22, "0.0.0.0/0", "PT3H")
	own := ask(t, ctl, bob, vm.ID, 22, "", "PT3H")
	clk.add(time.Minute)
	d := control.AzureDefaults{Subscription: "00000000-0000-0000-0000-000000000001", Location: "westeurope"}
	key := control.AzureKey{Subscription: d.Subscription, Group: "prod", Location: d.Location, Name: control.DefaultAzurePolicy}
	err := ctl.PutAzurePolicy(ctx, admin, key, d, []control.AzureVMPolicy{{VMID: vm.ID, Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"198.51.100.8"}, MaxRequestAccessDuration: "PT30M"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, anyw.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant from anywhere after the Azure policy narrowed: %s", g.Status)
	}
	if g := grantOf(t, ctl, own.ID); g.Status != jit.GrantActive || !g.EndTime.Equal(own.StartTime.Add(30*time.Minute)) {
		t.Errorf("own grant after the Azure policy narrowed: %s ending %v", g.Status, g.EndTime)
	}
	d1 := grantEvents(t, ctl, jit.OpGrantShorten)[own.ID]
	if c, _ := d1["cause"].(map[string]any); c["azurePolicy"] == nil || c["operation"] != jit.OpPolicyUpdate {
		t.Errorf("shorten event's cause %v does not name the Azure policy update", d1["cause"])
	}
	if _, err := ctl.DeleteAzurePolicy(ctx, admin, key, d); err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, own.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant after the Azure policy was deleted: %s", g.Status)
	}
	if d := grantEvents(t, ctl, jit.OpGrantRevoke)[own.ID]; causeOp(d) != jit.OpPolicyDelete {
		t.Errorf("revoke event after the policy's deletion names %v", d["cause"])
	}
}

// TestDeletePolicyEndsGrants: disabling JIT ends the VM's grants, each
// event naming the deletion.
func TestDeletePolicyEndsGrants(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	g := ask(t, ctl, admin, vm.ID, 22, "", "PT1H")
	if err := ctl.DeletePolicy(ctx, admin, vm.ID); err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, g.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant after JIT was disabled: %s", g.Status)
	}
	if d := grantEvents(t, ctl, jit.OpGrantRevoke)[g.ID]; causeOp(d) != jit.OpPolicyDelete {
		t.Errorf("revoke event names %v, want the policy deletion", d["cause"])
	}
}

// binding gives user a role in group and returns the binding.
func binding(t *testing.T, ctl *control.Control, admin *control.Actor, user, role, group string) jit.RoleBinding {
	t.Helper()
	b, err := ctl.CreateRoleBinding(context.Background(), admin, jit.RoleBinding{User: user, Role: role, Group: group})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// login returns user as an actor from addr with a new token, and the
// token's id.
func login(t *testing.T, ctl *control.Control, admin *control.Actor, user, addr string) (*control.Actor, string) {
	t.Helper()
	ctx := context.Background()
	tk, err := ctl.CreateToken(ctx, admin, jit.NewToken{User: user})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ctl.Authenticate(ctx, tk.Secret, netip.MustParseAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	return a, tk.Token.ID
}

// TestRoleChangeEndsGrants: a grant lives only while its holder may still
// request it. Removing the binding that allowed it ends it unless another
// binding allows it; removing the right to name other sources ends the
// grants for other sources; revoking a token leaves grants alone.
func TestRoleChangeEndsGrants(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	if _, err := ctl.CreateUser(ctx, admin, jit.NewUser{Name: "carol"}); err != nil {
		t.Fatal(err)
	}
	req := binding(t, ctl, admin, "carol", jit.RoleRequester, "prod")
	anySrc := binding(t, ctl, admin, "carol", jit.RoleRequesterAnySource, "prod")
	carol, tokenID := login(t, ctl, admin, "carol", "198.51.100.20")
	own := ask(t, ctl, carol, vm.ID, 22, "", "PT1H")
	other := ask(t, ctl, carol, vm.ID, 22, "203.0.113.0/24", "PT1H")

	// Tokens are credentials, not permissions: the grants stay.
	if err := ctl.RevokeToken(ctx, admin, tokenID); err != nil {
		t.Fatal(err)
	}
	for _, g := range []jit.Grant{own, other} {
		if g := grantOf(t, ctl, g.ID); g.Status != jit.GrantActive {
			t.Errorf("grant from %s after carol's token was revoked: %s", g.Source, g.Status)
		}
	}

	if err := ctl.DeleteRoleBinding(ctx, admin, anySrc.ID); err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, other.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant for another source without requester-any-source: %s", g.Status)
	}
	if g := grantOf(t, ctl, own.ID); g.Status != jit.GrantActive {
		t.Errorf("grant for carol's own address with requester still bound: %s", g.Status)
	}
	if got := desiredGrants(t, ctl, admin, vm.ID); len(got) != 1 || got[own.ID] == 0 {
		t.Errorf("desired grants = %v, want only %s", got, own.ID)
	}

	// Another binding that allows the grant keeps it.
	everywhere := binding(t, ctl, admin, "carol", jit.RoleRequester, jit.AllGroups)
	if err := ctl.DeleteRoleBinding(ctx, admin, req.ID); err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, own.ID); g.Status != jit.GrantActive {
		t.Errorf("grant still allowed by requester in every group: %s", g.Status)
	}
	if err := ctl.DeleteRoleBinding(ctx, admin, everywhere.ID); err != nil {
		t.Fatal(err)
	}
	if g := grantOf(t, ctl, own.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant after carol's last requester binding went: %s", g.Status)
	}
	if got := desiredGrants(t, ctl, admin, vm.ID); len(got) != 0 {
		t.Errorf("desired grants = %v, want none", got)
	}
	revoked := grantEvents(t, ctl, jit.OpGrantRevoke)
	for _, g := range []jit.Grant{own, other} {
		if causeOp(revoked[g.ID]) != jit.OpRoleBindingDelete {
			t.Errorf("revoke event of grant from %s names %v, want the binding's deletion", g.Source, revoked[g.ID]["cause"])
		}
	}
	if err := ctl.DeleteRoleBinding(ctx, admin, everywhere.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("deleting a deleted binding: %v, want not found", err)
	}
}

// TestRefusalNamesVM: a refused request is logged against the VMs it
// names that the requester may read, and only those.
func TestRefusalNamesVM(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	for _, g := range []string{"secret", "staging"} {
		if _, err := ctl.CreateGroup(ctx, admin, g); err != nil {
			t.Fatal(err)
		}
	}
	hidden, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "vault", Group: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	dan := actor(t, ctl, admin, "dan", jit.RoleReader, "prod", "198.51.100.30")
	eve := actor(t, ctl, admin, "eve", jit.RoleReader, "staging", "198.51.100.31")
	for _, c := range []struct {
		who  *control.Actor
		vms  []string
		want []string // VM ids the refusal events name ("" for none)
	}{
		{dan, []string{vm.ID}, []string{vm.ID}},
		{dan, []string{hidden.ID, vm.ID}, []string{vm.ID}},
		{dan, []string{hidden.ID}, []string{""}},
		{eve, []string{vm.ID}, []string{""}},
	} {
		before := len(eventsOf(t, ctl, store.EventFilter{Operation: jit.OpRequestRefuse}))
		r := jit.AccessRequest{}
		for _, id := range c.vms {
			r.VirtualMachines = append(r.VirtualMachines, jit.VMRequest{ID: id, Ports: []jit.PortRequest{{Number: 22}}})
		}
		if _, err := ctl.RequestAccess(ctx, c.who, r); jit.ErrorCode(err) != jit.EForbidden {
			t.Fatalf("%s requesting %v: %v, want forbidden", c.who.Name(), c.vms, err)
		}
		var got []string
		for _, e := range eventsOf(t, ctl, store.EventFilter{Operation: jit.OpRequestRefuse})[before:] {
			got = append(got, e.VMID)
			if e.VMID == vm.ID && e.Group != "prod" {
				t.Errorf("refusal names VM %s without its group: %+v", e.VMID, e)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s requesting %v: refusals name VMs %q, want %q", c.who.Name(), c.vms, got, c.want)
		}
	}
	// Readers of the VM's group see the refusals in the VM's log.
	if ev := eventsOf(t, ctl, store.EventFilter{VMID: vm.ID, Operation: jit.OpRequestRefuse, Groups: []string{"prod"}}); len(ev) != 2 {
		t.Errorf("%d refusals in the log of %s, want 2", len(ev), vm.Name)
	}
}

// TestRefusalTargets: refusals that are about one field name it, 403s too.
func TestRefusalTargets(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	if _, err := ctl.CreateGroup(ctx, admin, "staging"); err != nil {
		t.Fatal(err)
	}
	stage, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "st-1", Group: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	fay := actor(t, ctl, admin, "fay", jit.RoleRequester, "prod", "198.51.100.40")
	if _, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: "fay", Role: jit.RoleReader, Group: "staging"}); err != nil {
		t.Fatal(err)
	}
	fay, _ = login(t, ctl, admin, "fay", "198.51.100.40")
	for _, c := range []struct {
		r      jit.AccessRequest
		code   string
		target string
	}{
		{jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "203.0.113.5"}}}}},
			jit.EForbidden, "virtualMachines[0].ports[0].allowedSourceAddressPrefix"},
		{jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22}}}, {ID: stage.ID, Ports: []jit.PortRequest{{Number: 22}}}}},
			jit.EForbidden, "virtualMachines[1].id"},
	} {
		_, err := ctl.RequestAccess(ctx, fay, c.r)
		if jit.ErrorCode(err) != c.code || jit.ErrorTarget(err) != c.target {
			t.Errorf("refusal %v (target %q), want %s on %s", err, jit.ErrorTarget(err), c.code, c.target)
		}
	}
}

// BenchmarkPolicyUpdateWithGrants measures a policy update that re-checks
// 1,000 active grants on the VM and keeps them all.
func BenchmarkPolicyUpdateWithGrants(b *testing.B) {
	ctl, _, admin, vm := setup(b)
	ctx := context.Background()
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range 1000 {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		_, err := ctl.RequestAccess(ctx, admin, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID,
			Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: netip.AddrFrom4(a).String()}}}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	p := jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := ctl.PutPolicy(ctx, admin, vm.ID, p); err != nil {
			b.Fatal(err)
		}
	}
}
