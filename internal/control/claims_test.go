package control_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
	"github.com/ajarhq/ajar/internal/store"
)

const testIssuer = "https://idp.example.com"

func ssoIdentity(user string, groups ...string) sso.Identity {
	return sso.Identity{Issuer: testIssuer, Subject: "sub-" + user, Username: user, Groups: groups, Claims: map[string][]string{"groups": groups}}
}

func roles(bs []jit.RoleBinding) map[string]bool {
	out := map[string]bool{}
	for _, b := range bs {
		out[b.Role+"@"+b.Group] = true
	}
	return out
}

// A provider user gets exactly the roles their claims map to, at every
// sign-in: leaving the provider's group takes the role and ends the
// grants it allowed; a binding an admin made by hand stays.
func TestClaimMappings(t *testing.T) {
	ctx := context.Background()
	ctl, _, admin, vm := setup(t)
	addr := netip.MustParseAddr("203.0.113.9")
	if _, err := ctl.CreateGroup(ctx, admin, "dev"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []jit.ClaimMapping{
		{Claim: "groups", Value: "ops", Role: jit.RoleRequester, Group: "prod"},
		{Claim: "groups", Value: "devs", Role: jit.RoleReader, Group: "dev"},
	} {
		if _, err := ctl.CreateClaimMapping(ctx, admin, m); err != nil {
			t.Fatal(err)
		}
	}
	// Refused: bad fields, a missing group, a non-admin.
	for _, m := range []jit.ClaimMapping{
		{Claim: "", Value: "ops", Role: jit.RoleReader, Group: "prod"},
		{Claim: "groups", Value: "", Role: jit.RoleReader, Group: "prod"},
		{Claim: "groups", Value: "ops", Role: "overlord", Group: "prod"},
		{Claim: "groups", Value: "ops", Role: jit.RoleReader, Group: "nowhere"},
	} {
		if _, err := ctl.CreateClaimMapping(ctx, admin, m); err == nil {
			t.Errorf("mapping %+v accepted", m)
		}
	}

	_, olga, err := ctl.SSOSignIn(ctx, ssoIdentity("olga", "ops", "devs", "other"), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := roles(olga.Bindings); len(got) != 2 || !got[jit.RoleRequester+"@prod"] || !got[jit.RoleReader+"@dev"] {
		t.Fatalf("olga's roles = %v", got)
	}
	if !olga.Can(jit.PermRequest, "prod") {
		t.Fatal("olga may not request in prod")
	}
	g := ask(t, ctl, olga, vm.ID, 22, "", "PT1H")

	// A hand-made binding is not the claims' to take.
	if _, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: "olga", Role: jit.RoleReader, Group: "prod"}); err != nil {
		t.Fatal(err)
	}

	// Olga leaves "ops" at the provider; at her next sign-in the role
	// goes, and the grant it allowed ends.
	_, olga, err = ctl.SSOSignIn(ctx, ssoIdentity("olga", "devs"), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := roles(olga.Bindings); len(got) != 2 || got[jit.RoleRequester+"@prod"] || !got[jit.RoleReader+"@dev"] || !got[jit.RoleReader+"@prod"] {
		t.Fatalf("olga's roles after leaving ops = %v", got)
	}
	if st := grantOf(t, ctl, g.ID).Status; st != jit.GrantRevoked {
		t.Errorf("grant the removed role allowed: %s, want revoked", st)
	}
	var viaClaims int
	for _, e := range eventsOf(t, ctl, store.EventFilter{Operation: jit.OpRoleBindingDelete}) {
		if e.Actor == "olga" && strings.Contains(string(e.Details), `"via":"claims"`) {
			viaClaims++
		}
	}
	if viaClaims != 1 {
		t.Errorf("%d rolebinding.delete events by olga's sign-in, want 1", viaClaims)
	}

	// With no claims left, only the hand-made binding stays.
	_, olga, err = ctl.SSOSignIn(ctx, ssoIdentity("olga"), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := roles(olga.Bindings); len(got) != 1 || !got[jit.RoleReader+"@prod"] {
		t.Fatalf("olga's roles with no groups = %v", got)
	}

	// Another account whose name maps to olga is not let in as her.
	other := ssoIdentity("olga@elsewhere.example", "ops")
	other.Subject = "sub-someone-else"
	if _, _, err := ctl.SSOSignIn(ctx, other, addr, ""); jit.ErrorCode(err) != jit.EForbidden {
		t.Fatalf("another subject as olga: %v, want forbidden", err)
	}
	// Nor as the local admin.
	if _, _, err := ctl.SSOSignIn(ctx, ssoIdentity("admin", "ops"), addr, ""); jit.ErrorCode(err) != jit.EForbidden {
		t.Fatalf("provider's admin as the local admin: %v, want forbidden", err)
	}

	// Only admins manage mappings.
	if _, err := ctl.ListClaimMappings(ctx, olga); jit.ErrorCode(err) != jit.EForbidden {
		t.Errorf("olga lists mappings: %v", err)
	}
	ms, err := ctl.ListClaimMappings(ctx, admin)
	if err != nil || len(ms) != 2 {
		t.Fatalf("mappings = %+v, %v", ms, err)
	}
	if err := ctl.DeleteClaimMapping(ctx, admin, ms[0].ID); err != nil {
		t.Fatal(err)
	}
}
