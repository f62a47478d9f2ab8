package console_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso/ssotest"
)

// startSSO starts an OpenID provider with users and ajard configured for
// it.
func startSSO(t *testing.T, users ...string) (*ajardtest.Server, *ssotest.Provider) {
	t.Helper()
	op := ssotest.Start(t, users...)
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(ssotest.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := ajardtest.Start(t, ajardtest.Options{Dir: dir, Args: []string{
		"--oidc-issuer", op.Issuer, "--oidc-client-id", ssotest.ClientID, "--oidc-client-secret-file", secret,
		"--oidc-name", "Test IdP", "--oidc-scopes", "profile,email,groups",
	}})
	op.Allow(s.URL + "/signin/sso/callback")
	return s, op
}

// ssoBrowser follows every redirect, ajar's and the provider's, keeping
// cookies, as a browser does.
func ssoBrowser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// ssoSignIn goes from ajar's "Sign in with" link through the provider's
// login form and back; it returns the last page's URL, status and body.
func ssoSignIn(t *testing.T, hc *http.Client, s *ajardtest.Server, user, next string) (*url.URL, int, string) {
	t.Helper()
	resp, err := hc.Get(s.URL + "/signin/sso?next=" + url.QueryEscape(next))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	if !strings.Contains(resp.Request.URL.Path, "/login/") {
		return resp.Request.URL, resp.StatusCode, body
	}
	to, form := ssotest.LoginForm(resp.Request.URL, user)
	resp, err = hc.PostForm(to, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Request.URL, resp.StatusCode, readBody(resp)
}

func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for b.Len() < 1<<20 {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// A user of the organization's provider signs in to the console with
// "Sign in with <name>", is provisioned at the first sign-in (marked as
// from the provider), returns to the page they wanted, and every step is
// logged. A provider account whose name is a local user's is refused;
// with the provider down the page says so and local sign-in still works.
func TestSSOConsole(t *testing.T) {
	ctx := context.Background()
	s, op := startSSO(t, "olga", "admin")

	hc := ssoBrowser(t)
	resp, err := hc.Get(s.URL + "/signin?next=/activity")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(resp); !strings.Contains(body, "Sign in with Test IdP") || !strings.Contains(body, `href="/signin/sso?next=%2Factivity"`) {
		t.Fatalf("sign-in page has no SSO button for /activity:\n%s", body)
	}

	u, status, body := ssoSignIn(t, hc, s, "olga", "/activity")
	// Signed in and back at the page asked for (which, with no roles
	// yet, olga may not read).
	if u.Path != "/activity" || !strings.Contains(body, `olga <span class="roles">no roles</span>`) {
		t.Fatalf("after SSO: %d at %s\n%s", status, u, body)
	}
	users, err := s.Admin.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range users {
		if u.Name == "olga" {
			found = true
			if u.Origin != control.Origin(op.Issuer, "sub-olga") || u.HasPassword {
				t.Errorf("provisioned user = %+v", u)
			}
		}
	}
	if !found {
		t.Fatalf("olga not provisioned: %+v", users)
	}
	// A second sign-in finds the user.
	if _, status, _ := ssoSignIn(t, ssoBrowser(t), s, "olga", "/machines"); status != 200 {
		t.Fatalf("second sign-in: %d", status)
	}

	// The provider's "admin" is not the local admin.
	_, status, body = ssoSignIn(t, ssoBrowser(t), s, "admin", "/machines")
	if status != http.StatusForbidden || !strings.Contains(body, "local ajar user") {
		t.Fatalf("provider account named like the local admin: %d\n%s", status, body)
	}

	// A callback this browser did not start: refused, nothing opened.
	resp, err = ssoBrowser(t).Get(s.URL + "/signin/sso/callback?code=x&state=y")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "state") {
		t.Fatalf("callback without a started sign-in: %d\n%s", resp.StatusCode, body)
	}

	events, err := s.Admin.ListEvents(ctx, client.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var created, signedIn, refused int
	for _, e := range events {
		d := string(e.Details)
		switch {
		case e.Operation == jit.OpUserCreate && e.Outcome == jit.OutcomeSuccess && strings.Contains(d, `"via":"oidc"`) && strings.Contains(d, "olga"):
			created++
		case e.Operation == jit.OpSignIn && e.Outcome == jit.OutcomeSuccess && e.Actor == "olga" && strings.Contains(d, `"via":"oidc"`):
			signedIn++
		case e.Operation == jit.OpSignIn && e.Outcome == jit.OutcomeFailure && strings.Contains(d, `"via":"oidc"`):
			refused++
		}
	}
	if created != 1 || signedIn != 2 || refused != 2 {
		t.Errorf("events: %d provisionings, %d sign-ins, %d refusals; want 1, 2, 2", created, signedIn, refused)
	}

	// Provider down: a clear page, and the local admin still gets in.
	if _, err := s.Admin.SetPassword(ctx, "admin", "", "break-glass-pass-1"); err != nil {
		t.Fatal(err)
	}
	op.SetDown(true)
	s.Restart() // forgets the provider's discovery document
	down := ssoBrowser(t)
	u, status, body = ssoSignIn(t, down, s, "olga", "/machines")
	if status != http.StatusBadGateway || u.Path != "/signin/sso" || !strings.Contains(body, "Test IdP cannot be reached") || !strings.Contains(body, `id="password"`) {
		t.Fatalf("provider down: %d at %s\n%s", status, u, body)
	}
	resp, err = down.PostForm(s.URL+"/signin", url.Values{"user": {"admin"}, "password": {"break-glass-pass-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(resp); resp.StatusCode != 200 || resp.Request.URL.Path != "/machines" {
		t.Fatalf("local sign-in with the provider down: %d\n%s", resp.StatusCode, body)
	}
}

// The code flow in headless Chromium: a page asked for leads to the
// sign-in page, "Sign in with Test IdP" to the provider's login form, and
// back to that page, signed in with the roles the user's groups map to.
func TestSSOBrowser(t *testing.T) {
	ctx := newBrowser(t)
	s, op := startSSO(t, "olga")
	if _, err := s.Admin.CreateClaimMapping(context.Background(), "groups", "auditors", jit.RoleReader, jit.AllGroups); err != nil {
		t.Fatal(err)
	}
	op.SetGroups("olga", "auditors")
	run(t, ctx, "sign in with the provider",
		chromedp.Navigate(s.URL+"/activity"),
		visible("#signin-sso"),
		click("#signin-sso"),
		visible("#username"),
		keys("#username", "olga"),
		keys("#password", ssotest.Password),
		click(`button[type="submit"]`),
		visible(".who .user"),
	)
	loc := get(t, ctx, "location", chromedp.Location())
	if u, err := url.Parse(loc); err != nil || u.Path != "/activity" {
		t.Fatalf("after sign-in at %s, want /activity", loc)
	}
	who := get(t, ctx, "user", chromedp.Text(chromedp.CSS(".who .user")))
	if !strings.Contains(who, "olga") || !strings.Contains(who, jit.RoleReader) {
		t.Errorf("signed in as %q, want olga with role reader", who)
	}
}
