package console_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestMyAccessAndAccount walks a requester's own pages: My access (live
// and ended grants across machines, revoke from there), and My account
// (change the password with the current one, revoke an API token).
func TestMyAccessAndAccount(t *testing.T) {
	ctx := newBrowser(t)
	shot := newShots(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	tok, err := api.CreateToken(bg, jit.NewToken{User: "rachel", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	rachel := f.s.Client(tok.Secret)
	req, err := rachel.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22}}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := req.Grants[0]
	signInBrowser(t, ctx, base, "rachel", requesterPassword)

	run(t, ctx, "my access", chromedp.Navigate(base+"/access"), visible(`tr[data-grant="`+g.ID+`"]`))
	mustContain(t, "my access", textOf(t, ctx, `tr[data-grant="`+g.ID+`"]`), "web-1", "22")
	shot.take(ctx, "my-access")
	run(t, ctx, "revoke from my access", click(`tr[data-grant="`+g.ID+`"] [data-revoke]`), visible(".banner.ok"), visible("#recent"))
	mustContain(t, "notice", textOf(t, ctx, ".banner.ok"), "Access revoked", "revoked by rachel")
	mustContain(t, "recently ended", textOf(t, ctx, "#recent"), "web-1", "revoked by rachel")
	mustContain(t, "my requests", textOf(t, ctx, "#my-requests"), "approved")

	// The password: the current one is needed.
	run(t, ctx, "account", click("a.user"), visible("#password-submit"),
		keys("#current", "not-my-password"), keys("#new-password", "rachel-new-password-1"), keys("#confirm", "rachel-new-password-1"),
		click("#password-submit"), visible("#password-error"))
	mustContain(t, "password error", textOf(t, ctx, "#password-error"), "current password is wrong")
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "password-error" {
		t.Errorf("focus on %q after the refusal, want the error", id)
	}
	run(t, ctx, "change", keys("#current", requesterPassword), keys("#new-password", "rachel-new-password-1"), keys("#confirm", "rachel-new-password-1"),
		click("#password-submit"))
	waitText(t, ctx, "#notice", "Password changed")
	u := newHTTPUser(t, base)
	u.signIn("rachel", "rachel-new-password-1")

	// Tokens: this session is marked; the laptop token is revoked here.
	mustContain(t, "tokens", textOf(t, ctx, "#own-tokens"), "laptop", "this session")
	run(t, ctx, "revoke the laptop token", click(`tr[data-token="`+tok.ID+`"] button`))
	waitText(t, ctx, "#notice", "Token revoked")
	if _, err := rachel.Whoami(bg); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("the revoked token still works: %v", err)
	}
}
