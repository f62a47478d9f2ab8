package control_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Authenticate keeps what it read of a token, yet a revocation, a role
// removed or given, a user deleted and an expiry take effect on the very
// next request.
func TestAuthCacheFollowsChanges(t *testing.T) {
	ctl, clk, admin, _ := setup(t)
	ctx := context.Background()
	addr := netip.MustParseAddr("198.51.100.9")
	if _, err := ctl.CreateUser(ctx, admin, jit.NewUser{Name: "rita"}); err != nil {
		t.Fatal(err)
	}
	b, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: "rita", Role: jit.RoleRequester, Group: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := ctl.CreateToken(ctx, admin, jit.NewToken{User: "rita", TTL: "PT1H"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ctl.CreateToken(ctx, admin, jit.NewToken{User: "rita"})
	if err != nil {
		t.Fatal(err)
	}
	roles := func(secret string) []jit.RoleBinding {
		t.Helper()
		a, err := ctl.Authenticate(ctx, secret, addr)
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		if a.User != "rita" || a.Address != addr {
			t.Fatalf("authenticated as %q from %v", a.User, a.Address)
		}
		return a.Bindings
	}
	for range 3 { // read once, then kept
		if bs := roles(tk.Secret); len(bs) != 1 || bs[0].Role != jit.RoleRequester {
			t.Fatalf("bindings %+v, want requester in prod", bs)
		}
	}

	if err := ctl.DeleteRoleBinding(ctx, admin, b.ID); err != nil {
		t.Fatal(err)
	}
	if bs := roles(tk.Secret); len(bs) != 0 {
		t.Errorf("after the binding was removed the token still carries %+v", bs)
	}
	if _, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: "rita", Role: jit.RoleReader, Group: "prod"}); err != nil {
		t.Fatal(err)
	}
	if bs := roles(tk.Secret); len(bs) != 1 || bs[0].Role != jit.RoleReader {
		t.Errorf("after a binding was given: %+v, want reader", bs)
	}

	if err := ctl.RevokeToken(ctx, admin, tk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, tk.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("a revoked token authenticated: %v", err)
	}
	roles(other.Secret)
	clk.add(2 * time.Hour) // past the first token's TTL; the other has none
	roles(other.Secret)
	if err := ctl.DeleteUser(ctx, admin, "rita"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, other.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("the token of a deleted user authenticated: %v", err)
	}

	// An agent's token goes with its VM; an enrollment token's uses are
	// read every time.
	en, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	ea, err := ctl.Authenticate(ctx, en.Secret, addr)
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := ctl.Enroll(ctx, ea, jit.Enrollment{Name: "web-9", OS: "linux", Addresses: []string{"198.51.100.20"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, en.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("a used-up enrollment token authenticated: %v", err)
	}
	for range 2 {
		if a, err := ctl.Authenticate(ctx, enrolled.Secret, addr); err != nil || a.Token.VMID != enrolled.VM.ID {
			t.Fatalf("the agent's token: %+v %v", a, err)
		}
	}
	if err := ctl.DeleteVM(ctx, admin, enrolled.VM.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, enrolled.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("the agent token of a deleted VM authenticated: %v", err)
	}
}
