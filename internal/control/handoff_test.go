package control_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"testing"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// ajar login --sso's code: good once, only with its verifier, for an API
// token of bounded life; never a credential itself.
func TestSSOCodeExchange(t *testing.T) {
	ctx := context.Background()
	ctl, clk, _, _ := setup(t)
	addr := netip.MustParseAddr("127.0.0.1")
	verifier := "a-verifier-of-the-cli-0123456789abcdefghijkl"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	if err := control.ValidChallenge(challenge); err != nil {
		t.Fatal(err)
	}
	if err := control.ValidChallenge("short"); jit.ErrorCode(err) != jit.EInvalid {
		t.Errorf("short challenge: %v", err)
	}

	code, _, err := ctl.SSOSignIn(ctx, ssoIdentity("olga"), addr, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Authenticate(ctx, code, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("the code as a bearer token: %v, want unauthorized", err)
	}
	if _, err := ctl.ExchangeSSOCode(ctx, code, "another-verifier", addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("wrong verifier: %v, want unauthorized", err)
	}
	tk, err := ctl.ExchangeSSOCode(ctx, code, verifier, addr)
	if err != nil {
		t.Fatal(err)
	}
	if tk.User != "olga" || tk.ExpiresAt == nil || tk.ExpiresAt.Sub(tk.CreatedAt) != control.SSOTokenLifetime {
		t.Fatalf("token = %+v", tk.Token)
	}
	a, err := ctl.Authenticate(ctx, tk.Secret, addr)
	if err != nil || a.Name() != "olga" {
		t.Fatalf("the API token: %v, %v", a, err)
	}
	if _, err := ctl.ExchangeSSOCode(ctx, code, verifier, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("replayed code: %v, want unauthorized", err)
	}

	// A code not used within HandoffLifetime is worth nothing.
	code, _, err = ctl.SSOSignIn(ctx, ssoIdentity("olga"), addr, challenge)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(control.HandoffLifetime)
	if _, err := ctl.ExchangeSSOCode(ctx, code, verifier, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("expired code: %v, want unauthorized", err)
	}
}
