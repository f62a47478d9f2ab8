package control_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// approvalSetup gives the setup VM a policy requiring `required`
// approvals, and returns a requester ann (who is an approver too, to show
// she still cannot approve herself), approvers bob and cat of prod, and
// dan, an approver of another group.
func approvalSetup(t *testing.T, required int, lifetime string) (ctl *control.Control, clk *clock, admin *control.Actor, vm jit.VM, ann, bob, cat, dan *control.Actor) {
	t.Helper()
	ctx := context.Background()
	ctl, clk, admin, vm = setup(t)
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}},
		Approval: &jit.Approval{Required: required, PendingLifetime: lifetime}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateGroup(ctx, admin, "dev"); err != nil {
		t.Fatal(err)
	}
	ann = actor(t, ctl, admin, "ann", jit.RoleRequester, "prod", "198.51.100.21")
	binding(t, ctl, admin, "ann", jit.RoleApprover, "prod")
	ann, _ = login(t, ctl, admin, "ann", "198.51.100.21")
	bob = actor(t, ctl, admin, "bob", jit.RoleApprover, "prod", "198.51.100.22")
	cat = actor(t, ctl, admin, "cat", jit.RoleApprover, "prod", "198.51.100.23")
	dan = actor(t, ctl, admin, "dan", jit.RoleApprover, "dev", "198.51.100.24")
	return
}

func askPending(t *testing.T, ctl *control.Control, a *control.Actor, vmID, duration string) jit.Request {
	t.Helper()
	r, err := ctl.RequestAccess(context.Background(), a, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vmID,
		Ports: []jit.PortRequest{{Number: 22, Duration: duration}}}}, Justification: "incident 7"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != jit.RequestPending || len(r.Grants) != 0 || r.ExpiresAt == nil {
		t.Fatalf("request under an approval rule = %+v, want pending without grants", r)
	}
	return r
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if jit.ErrorCode(err) != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
}

func grantsOfRequest(t *testing.T, ctl *control.Control, id string) []jit.Grant {
	t.Helper()
	var out []jit.Grant
	err := ctl.Store().View(context.Background(), func(tx store.Tx) error {
		all, err := tx.ListGrants(store.GrantFilter{})
		for _, g := range all {
			if g.RequestID == id {
				out = append(out, g)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApprovalThreshold: two approvals open the grant; until then the VM's
// desired state has none; the requester cannot approve herself, an
// approver of another group cannot, nobody twice; the grant's duration
// counts from the approval that completes it.
func TestApprovalThreshold(t *testing.T) {
	ctx := context.Background()
	ctl, clk, admin, vm, ann, bob, cat, dan := approvalSetup(t, 2, "")
	r := askPending(t, ctl, ann, vm.ID, "PT1H")
	if want := clk.now().Add(jit.DefaultPendingLifetime); !r.ExpiresAt.Equal(want) {
		t.Errorf("pending until %s, want %s", r.ExpiresAt, want)
	}
	if len(events(t, ctl, admin, jit.OpRequestPending)) != 1 {
		t.Error("no request.pending event")
	}
	_, err := ctl.Approve(ctx, ann, r.ID, "")
	wantCode(t, "self-approval", err, jit.EForbidden)
	_, err = ctl.Approve(ctx, dan, r.ID, "")
	wantCode(t, "approval by another group's approver", err, jit.ENotFound)
	_, err = ctl.Approve(ctx, admin, r.ID, "")
	wantCode(t, "approval by an admin without the approver role", err, jit.EForbidden)

	clk.add(10 * time.Minute)
	got, err := ctl.Approve(ctx, bob, r.ID, "looks right")
	if err != nil || got.Status != jit.RequestPending || len(got.Decisions) != 1 {
		t.Fatalf("first of two approvals = %+v, %v", got, err)
	}
	if d := desiredGrants(t, ctl, admin, vm.ID); len(d) != 0 {
		t.Fatalf("desired state after one of two approvals has grants %v", d)
	}
	_, err = ctl.Approve(ctx, bob, r.ID, "")
	wantCode(t, "a second approval by the same approver", err, jit.EConflict)

	clk.add(10 * time.Minute)
	approvedAt := clk.now()
	got, err = ctl.Approve(ctx, cat, r.ID, "")
	if err != nil || got.Status != jit.RequestApproved || len(got.Grants) != 1 {
		t.Fatalf("second approval = %+v, %v", got, err)
	}
	g := got.Grants[0]
	if !g.StartTime.Equal(approvedAt) || !g.EndTime.Equal(approvedAt.Add(time.Hour)) || g.User != "ann" || g.Source != "198.51.100.21/32" {
		t.Errorf("grant %+v: want ann's address, from %s for an hour", g, approvedAt)
	}
	if d := desiredGrants(t, ctl, admin, vm.ID); d[g.ID] != 3600 {
		t.Errorf("desired state after approval = %v, want grant %s with 3600 s", d, g.ID)
	}
	stored, err := ctl.GetRequest(ctx, ann, r.ID)
	if err != nil || stored.Status != jit.RequestApproved || stored.DecidedAt == nil || !stored.DecidedAt.Equal(approvedAt) ||
		len(stored.Decisions) != 2 || stored.Decisions[0].User != "bob" || stored.Decisions[0].Reason != "looks right" || stored.Decisions[1].User != "cat" || len(stored.Grants) != 1 {
		t.Errorf("request record = %+v, %v", stored, err)
	}
	ev := events(t, ctl, admin, jit.OpRequestApprove)
	if len(ev) != 1 || ev[0].Actor != "cat" {
		t.Errorf("request.approve events = %+v", ev)
	}
	if len(events(t, ctl, admin, jit.OpRequestApproval)) != 1 {
		t.Error("no request.approval event for the first approval")
	}
	_, err = ctl.Approve(ctx, dan, r.ID, "")
	wantCode(t, "approval of a decided request by an outsider", err, jit.ENotFound)
	_, err = ctl.Deny(ctx, bob, r.ID, "too late")
	wantCode(t, "denial of an approved request", err, jit.EConflict)
}

// TestDenyOpensNothing: a denial needs a reason; a denied request never
// opens anything, and cannot be approved after.
func TestDenyOpensNothing(t *testing.T) {
	ctx := context.Background()
	ctl, _, admin, vm, ann, bob, cat, _ := approvalSetup(t, 1, "")
	r := askPending(t, ctl, ann, vm.ID, "")
	_, err := ctl.Deny(ctx, bob, r.ID, " ")
	if jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != "reason" {
		t.Errorf("denial without a reason: %v", err)
	}
	got, err := ctl.Deny(ctx, bob, r.ID, "not during the freeze")
	if err != nil || got.Status != jit.RequestDenied || got.Decisions[0].Reason != "not during the freeze" {
		t.Fatalf("deny = %+v, %v", got, err)
	}
	_, err = ctl.Approve(ctx, cat, r.ID, "")
	wantCode(t, "approval after a denial", err, jit.EConflict)
	if d := desiredGrants(t, ctl, admin, vm.ID); len(d) != 0 {
		t.Errorf("desired state after a denial has grants %v", d)
	}
	if gs := grantsOfRequest(t, ctl, r.ID); len(gs) != 0 {
		t.Errorf("a denied request has grants %+v", gs)
	}
	if ev := events(t, ctl, admin, jit.OpRequestDeny); len(ev) != 1 || ev[0].Actor != "bob" {
		t.Errorf("request.deny events = %+v", ev)
	}
	if ev := events(t, ctl, admin, jit.OpGrantOpen); len(ev) != 0 {
		t.Errorf("grant.open events after a denial: %+v", ev)
	}
}

// TestPendingExpires: a request waits its policy's pending lifetime and
// no longer; the expirer's sweep ends it once, with its end time.
func TestPendingExpires(t *testing.T) {
	ctx := context.Background()
	ctl, clk, admin, vm, ann, bob, _, _ := approvalSetup(t, 1, "PT1H")
	r := askPending(t, ctl, ann, vm.ID, "")
	clk.add(59 * time.Minute)
	if n, err := ctl.ExpireDue(ctx); err != nil || n != 0 {
		t.Fatalf("ExpireDue before the end of the wait = %d, %v", n, err)
	}
	if p, _, err := ctl.ListPending(ctx, bob, 0, ""); err != nil || len(p) != 1 || p[0].ID != r.ID {
		t.Errorf("bob's queue = %+v, %v", p, err)
	}
	if p, _, err := ctl.ListPending(ctx, ann, 0, ""); err != nil || len(p) != 0 {
		t.Errorf("ann's queue holds her own request: %+v, %v", p, err)
	}
	clk.add(2 * time.Minute)
	_, err := ctl.Approve(ctx, bob, r.ID, "")
	wantCode(t, "approval after the wait", err, jit.EConflict)
	for i, want := range []int{1, 0} {
		if n, err := ctl.ExpireDue(ctx); err != nil || n != want {
			t.Fatalf("ExpireDue #%d = %d, %v; want %d", i+1, n, err, want)
		}
	}
	got, err := ctl.GetRequest(ctx, ann, r.ID)
	if err != nil || got.Status != jit.RequestExpired || got.DecidedAt == nil || !got.DecidedAt.Equal(r.ExpiresAt.UTC()) {
		t.Errorf("expired request = %+v, %v", got, err)
	}
	if ev := events(t, ctl, admin, jit.OpRequestExpire); len(ev) != 1 {
		t.Errorf("request.expire events = %+v", ev)
	}
	if d := desiredGrants(t, ctl, admin, vm.ID); len(d) != 0 {
		t.Errorf("desired state after the wait has grants %v", d)
	}
}

// TestCancelPending: only the requester cancels; a cancelled request
// cannot be approved.
func TestCancelPending(t *testing.T) {
	ctx := context.Background()
	ctl, _, admin, vm, ann, bob, _, _ := approvalSetup(t, 1, "")
	r := askPending(t, ctl, ann, vm.ID, "")
	_, err := ctl.Cancel(ctx, bob, r.ID)
	wantCode(t, "cancel by an approver", err, jit.EForbidden)
	if got, err := ctl.Cancel(ctx, ann, r.ID); err != nil || got.Status != jit.RequestCancelled {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	_, err = ctl.Approve(ctx, bob, r.ID, "")
	wantCode(t, "approval after a cancel", err, jit.EConflict)
	if ev := events(t, ctl, admin, jit.OpRequestCancel); len(ev) != 1 || ev[0].Actor != "ann" {
		t.Errorf("request.cancel events = %+v", ev)
	}
}

// TestRequestAccessNowRefusesApproval: the Azure-compatible path cannot
// wait, so a VM needing approval is refused there and nothing is kept;
// without an approval rule requests are approved at once, as before.
func TestRequestAccessNowRefusesApproval(t *testing.T) {
	ctx := context.Background()
	ctl, _, admin, vm, ann, _, _, _ := approvalSetup(t, 1, "")
	in := jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22}}}}}
	_, err := ctl.RequestAccessNow(ctx, ann, in)
	if jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != "virtualMachines[0].id" {
		t.Errorf("RequestAccessNow on a VM needing approval: %v", err)
	}
	if list, _, err := ctl.ListRequests(ctx, admin, control.RequestListFilter{}); err != nil || len(list) != 0 {
		t.Errorf("requests after the refusal: %+v, %v", list, err)
	}
	if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := ctl.RequestAccessNow(ctx, ann, in)
	if err != nil || r.Status != jit.RequestApproved || len(r.Grants) != 1 {
		t.Errorf("request without an approval rule = %+v, %v", r, err)
	}
}

// TestAzurePolicyKeepsApproval: an Azure client rewriting a VM's ports
// cannot drop the approval rule it does not know of.
func TestAzurePolicyKeepsApproval(t *testing.T) {
	ctx := context.Background()
	ctl, _, admin, vm, _, _, _, _ := approvalSetup(t, 2, "PT1H")
	d := control.AzureDefaults{Subscription: "00000000-0000-0000-0000-000000000001", Location: "westeurope"}
	key := control.AzureKey{Subscription: d.Subscription, Group: "prod", Location: d.Location, Name: control.DefaultAzurePolicy}
	if err := ctl.PutAzurePolicy(ctx, admin, key, d, []control.AzureVMPolicy{{VMID: vm.ID, Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT30M"}}}}); err != nil {
		t.Fatal(err)
	}
	p, err := ctl.GetPolicy(ctx, admin, vm.ID)
	if err != nil || p.Approval == nil || p.Approval.Required != 2 || p.Approval.PendingLifetime != "PT1H" {
		t.Errorf("policy after an Azure update = %+v, %v; want the approval rule kept", p.Approval, err)
	}
}

// TestPendingPages: the approver's queue pages by cursor, the soonest to
// expire first, each request once; a bad cursor or limit is refused
// naming it.
func TestPendingPages(t *testing.T) {
	ctx := context.Background()
	ctl, clk, _, vm, ann, bob, _, _ := approvalSetup(t, 1, "PT1H")
	var want []string
	for range 5 {
		want = append(want, askPending(t, ctl, ann, vm.ID, "").ID)
		clk.add(time.Second)
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		p, next, err := ctl.ListPending(ctx, bob, 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > 2 || page > 3 {
			t.Fatalf("page %d: %d requests", page, len(p))
		}
		for _, r := range p {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages = %v, want %v (soonest to expire first, each once)", got, want)
	}
	if _, _, err := ctl.ListPending(ctx, bob, 0, "bogus"); jit.ErrorTarget(err) != "cursor" {
		t.Errorf("bad cursor: %v", err)
	}
	if _, _, err := ctl.ListPending(ctx, bob, control.MaxPage+1, ""); jit.ErrorTarget(err) != "limit" {
		t.Errorf("limit too large: %v", err)
	}
}

// TestAutoApproval: a request meeting every auto-approval condition
// (duration, UTC hours, requester in a group) opens at once, logged as
// auto-approved; one failing any condition waits; bad conditions are
// refused naming the field.
func TestAutoApproval(t *testing.T) {
	ctx := context.Background()
	ctl, clk, admin, vm, ann, _, _, _ := approvalSetup(t, 1, "PT1H")
	if _, err := ctl.CreateGroup(ctx, admin, "oncall"); err != nil {
		t.Fatal(err)
	}
	binding(t, ctl, admin, "ann", jit.RoleReader, "oncall")
	ann, _ = login(t, ctl, admin, "ann", "198.51.100.21")
	eve := actor(t, ctl, admin, "eve", jit.RoleRequester, "prod", "198.51.100.25")
	rule := []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}
	put := func(auto *jit.AutoApproval) error {
		_, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: rule, Approval: &jit.Approval{Required: 1, AutoApprove: auto}})
		return err
	}
	for _, c := range []struct {
		auto   jit.AutoApproval
		target string
	}{
		{jit.AutoApproval{}, "approval.autoApprove"},
		{jit.AutoApproval{MaxDuration: "PT48H"}, "approval.autoApprove.maxDuration"},
		{jit.AutoApproval{MaxDuration: "1h"}, "approval.autoApprove.maxDuration"},
		{jit.AutoApproval{Hours: "25-03"}, "approval.autoApprove.hours"},
		{jit.AutoApproval{Hours: "08-08"}, "approval.autoApprove.hours"},
		{jit.AutoApproval{Hours: "8-18"}, "approval.autoApprove.hours"},
		{jit.AutoApproval{RequesterGroups: []string{"*"}}, "approval.autoApprove.requesterGroups"},
	} {
		if err := put(&c.auto); jit.ErrorTarget(err) != c.target {
			t.Errorf("auto-approval %+v: %v, want an error naming %s", c.auto, err, c.target)
		}
	}
	if err := put(&jit.AutoApproval{MaxDuration: "PT1H", Hours: "09-17", RequesterGroups: []string{"oncall"}}); err != nil {
		t.Fatal(err)
	}
	ask := func(a *control.Actor, d string) jit.Request {
		t.Helper()
		r, err := ctl.RequestAccess(ctx, a, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID,
			Ports: []jit.PortRequest{{Number: 22, Duration: d}}}}, Justification: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The clock is at 12:00 UTC.
	if r := ask(ann, "PT30M"); r.Status != jit.RequestApproved || len(r.Grants) != 1 {
		t.Errorf("a request meeting every condition: %s with %d grants, want approved at once", r.Status, len(r.Grants))
	}
	ev := events(t, ctl, admin, jit.OpRequestApprove)
	if len(ev) != 1 || !strings.Contains(string(ev[0].Details), `"autoApproved":true`) {
		t.Errorf("request.approve events %+v, want one marked autoApproved", ev)
	}
	if r := ask(ann, "PT2H"); r.Status != jit.RequestPending {
		t.Errorf("longer than maxDuration: %s, want pending", r.Status)
	}
	if r := ask(eve, "PT30M"); r.Status != jit.RequestPending {
		t.Errorf("requester in none of the groups: %s, want pending", r.Status)
	}
	clk.add(6 * time.Hour) // 18:00 UTC
	if r := ask(ann, "PT30M"); r.Status != jit.RequestPending {
		t.Errorf("outside the hours: %s, want pending", r.Status)
	}
	if err := put(&jit.AutoApproval{Hours: "17-09"}); err != nil { // spans midnight
		t.Fatal(err)
	}
	if r := ask(eve, "PT2H"); r.Status != jit.RequestApproved {
		t.Errorf("within hours spanning midnight: %s, want approved", r.Status)
	}
}
