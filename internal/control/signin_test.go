package control_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

const alicePassword = "correct horse battery"

func signInSetup(t *testing.T) (*control.Control, *clock, *control.Actor) {
	t.Helper()
	ctl, clk, admin, _ := setup(t)
	if _, err := ctl.CreateUser(context.Background(), admin, jit.NewUser{Name: "alice", Password: alicePassword}); err != nil {
		t.Fatal(err)
	}
	return ctl, clk, admin
}

// TestSignInGuessing checks that guesses are limited per name and source
// with backoff, and that nobody guessing keeps alice out: not a guesser at
// another address, not many guessers at many addresses, not a guesser
// behind alice's own address who guesses other names.
func TestSignInGuessing(t *testing.T) {
	ctl, clk, _ := signInSetup(t)
	ctx := context.Background()
	attacker := netip.MustParseAddr("203.0.113.5")
	home := netip.MustParseAddr("198.51.100.9")
	try := func(user, pw string, from netip.Addr) error {
		t.Helper()
		_, _, err := ctl.SignIn(ctx, user, pw, from)
		return err
	}
	for i := range control.PairFree {
		if err := try("alice", "wrong password", attacker); jit.ErrorCode(err) != jit.EUnauthorized {
			t.Fatalf("guess %d = %v, want unauthorized", i+1, err)
		}
	}
	// The guesser now waits, doubling, even with the right password.
	err := try("alice", alicePassword, attacker)
	if jit.ErrorCode(err) != jit.ERateLimited || jit.ErrorRetryAfter(err) <= 0 {
		t.Fatalf("guess past the limit = %v, want rate_limited with a wait", err)
	}
	clk.add(time.Second)
	if err := try("alice", "wrong password", attacker); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("guess after the wait = %v, want unauthorized", err)
	}
	if err := try("alice", "wrong password", attacker); jit.ErrorRetryAfter(err) < time.Second {
		t.Fatalf("next guess = %v, want a wait of 2 s", err)
	}
	// Alice, from her own address, gets in.
	if err := try("alice", alicePassword, home); err != nil {
		t.Fatalf("alice from home after the guesses: %v", err)
	}

	// Many sources guessing alice's name: past NameSlow failures each
	// gets one guess before waiting; alice still gets in.
	for i := range control.NameSlow + 10 {
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})
		if err := try("alice", "wrong password", src); jit.ErrorCode(err) != jit.EUnauthorized {
			t.Fatalf("distributed guess %d = %v, want unauthorized", i, err)
		}
	}
	last := netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + control.NameSlow + 9)})
	if err := try("alice", "wrong password", last); jit.ErrorCode(err) != jit.ERateLimited {
		t.Errorf("second guess from a source once the name is guessed at from everywhere = %v, want rate_limited", err)
	}
	if err := try("alice", alicePassword, home); err != nil {
		t.Fatalf("alice from home while her name is guessed at: %v", err)
	}

	// A guesser behind alice's address (a shared NAT) trying many names
	// passes the per-source limit; alice, who did not fail, still gets in.
	for i := range control.SourceFree + 5 {
		name := "nobody" + string(rune('a'+i%26))
		if err := try(name, "wrong password", home); jit.ErrorCode(err) != jit.EUnauthorized && jit.ErrorCode(err) != jit.ERateLimited {
			t.Fatalf("guess %d from the shared address = %v", i, err)
		}
	}
	if err := try("alice", alicePassword, home); err != nil {
		t.Fatalf("alice behind a guessing address: %v", err)
	}
}

// TestReservedNames checks that the activity log's own actor names are no
// user names.
func TestReservedNames(t *testing.T) {
	ctl, _, admin, _ := setup(t)
	for _, name := range []string{"system", "anonymous", "System", "ANONYMOUS", "agent:0123"} {
		if _, err := ctl.CreateUser(context.Background(), admin, jit.NewUser{Name: name}); jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != "name" {
			t.Errorf("user %q: %v, want invalid name", name, err)
		}
	}
	if _, err := ctl.CreateUser(context.Background(), admin, jit.NewUser{Name: "systems"}); err != nil {
		t.Errorf("user systems: %v", err)
	}
}

// TestPasswordChange checks that changing one's own password needs the
// current one, an admin's reset does not, and both end the user's other
// console sessions.
func TestPasswordChange(t *testing.T) {
	ctl, _, admin := signInSetup(t)
	ctx := context.Background()
	home := netip.MustParseAddr("198.51.100.9")
	var sessions []string
	for range 3 {
		s, _, err := ctl.SignIn(ctx, "alice", alicePassword, home)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	alice, err := ctl.Authenticate(ctx, sessions[0], home)
	if err != nil {
		t.Fatal(err)
	}
	const next = "a new password, long"
	if _, err := ctl.SetPassword(ctx, alice, "alice", "", next); jit.ErrorTarget(err) != "currentPassword" {
		t.Errorf("own change without the current password = %v, want invalid currentPassword", err)
	}
	if _, err := ctl.SetPassword(ctx, alice, "alice", "wrong password", next); jit.ErrorTarget(err) != "currentPassword" {
		t.Errorf("own change with a wrong current password = %v, want invalid currentPassword", err)
	}
	n, err := ctl.SetPassword(ctx, alice, "alice", alicePassword, next)
	if err != nil || n != 2 {
		t.Fatalf("own change = %d, %v; want 2 other sessions ended", n, err)
	}
	if _, err := ctl.Authenticate(ctx, sessions[0], home); err != nil {
		t.Errorf("the session that changed the password: %v", err)
	}
	for _, s := range sessions[1:] {
		if _, err := ctl.Authenticate(ctx, s, home); jit.ErrorCode(err) != jit.EUnauthorized {
			t.Errorf("another session after the change: %v, want unauthorized", err)
		}
	}
	// An admin's reset needs no current password and ends every session.
	if n, err := ctl.SetPassword(ctx, admin, "alice", "", "an admin's reset, long"); err != nil || n != 1 {
		t.Fatalf("admin reset = %d, %v; want 1 session ended", n, err)
	}
	if _, err := ctl.Authenticate(ctx, sessions[0], home); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("alice's session after the reset: %v, want unauthorized", err)
	}
}
