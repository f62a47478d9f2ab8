package sso

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/ajarhq/ajar/internal/sso/ssotest"
)

const redirect = "http://127.0.0.1:1/signin/sso/callback" // never dialled: the browser stops there

// browse plays the browser: from the provider's authorization URL
// through its login form, up to the redirect back to ajar, whose query it
// returns.
func browse(t *testing.T, authURL, user string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), redirect) || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login page: %s", resp.Status)
	}
	to, form := ssotest.LoginForm(resp.Request.URL, user)
	resp, err = hc.PostForm(to, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), redirect) {
		t.Fatalf("after login: %s, location %v %v", resp.Status, loc, err)
	}
	return loc.Query()
}

func newProvider(op *ssotest.Provider, clientID string) *Provider {
	return New(Config{Issuer: op.Issuer, ClientID: clientID, ClientSecret: ssotest.ClientSecret, Name: "Test IdP", Scopes: []string{"profile", "email", "groups"}}, nil)
}

// The code flow against a real provider: the identity and its groups;
// the PKCE challenge, state and nonce are in the authorization request.
func TestCodeFlow(t *testing.T) {
	ctx := context.Background()
	op := ssotest.Start(t, "alice")
	op.Allow(redirect)
	op.SetGroups("alice", "ops-admins", "devs")
	p := newProvider(op, ssotest.ClientID)

	to, pend, err := p.Start(ctx, redirect, "/machines/x")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(to)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") != pend.State || q.Get("nonce") != pend.Nonce {
		t.Fatalf("authorization request lacks PKCE, state or nonce: %s", to)
	}
	back := browse(t, to, "alice")
	id, err := p.Finish(ctx, redirect, back, pend)
	if err != nil {
		t.Fatal(err)
	}
	if id.Username != "alice" || id.Subject != "sub-alice" || id.Issuer != op.Issuer || !slices.Equal(id.Groups, []string{"ops-admins", "devs"}) {
		t.Fatalf("identity = %+v", id)
	}
	if pend.Next != "/machines/x" {
		t.Errorf("next = %q", pend.Next)
	}

	// The provider rotates its key: a token signed with the new one is
	// accepted once the key set is fetched again.
	op.RotateKey()
	to2, pend2, err := p.Start(ctx, redirect, "/")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := p.Finish(ctx, redirect, browse(t, to2, "alice"), pend2); err != nil || id.Subject != "sub-alice" {
		t.Fatalf("after the key rotated: %+v, %v", id, err)
	}

	// The same code again: the provider refuses it.
	if _, err := p.Finish(ctx, redirect, back, pend); err == nil || !strings.Contains(err.Error(), "refused the sign-in code") {
		t.Errorf("replayed code: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	op := ssotest.Start(t, "alice")
	op.Allow(redirect)
	p := newProvider(op, ssotest.ClientID)
	start := func() (Pending, url.Values) {
		t.Helper()
		to, pend, err := p.Start(ctx, redirect, "/")
		if err != nil {
			t.Fatal(err)
		}
		return pend, browse(t, to, "alice")
	}

	t.Run("state mismatch", func(t *testing.T) {
		pend, back := start()
		back.Set("state", "someone-elses-state")
		if _, err := p.Finish(ctx, redirect, back, pend); err == nil || !strings.Contains(err.Error(), "state") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		pend, back := start()
		pend.Nonce = "another-sign-ins-nonce"
		if _, err := p.Finish(ctx, redirect, back, pend); err == nil || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("PKCE verifier of another sign-in", func(t *testing.T) {
		pend, back := start()
		other, _ := start()
		pend.Verifier = other.Verifier
		if _, err := p.Finish(ctx, redirect, back, pend); err == nil {
			t.Error("code exchanged with another verifier")
		}
	})
	t.Run("provider error", func(t *testing.T) {
		pend, _ := start()
		back := url.Values{"error": {"access_denied"}, "state": {pend.State}}
		if _, err := p.Finish(ctx, redirect, back, pend); err == nil || !strings.Contains(err.Error(), "access_denied") {
			t.Errorf("err = %v", err)
		}
	})

	// ID tokens checked on their own: a real one from the provider, then
	// for another audience, with a broken signature, expired.
	pend, back := start()
	o, err := p.discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := p.exchange(ctx, o, redirect, back.Get("code"), pend.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.verify(ctx, o, raw, pend.Nonce); err != nil {
		t.Fatalf("the provider's own token: %v", err)
	}
	t.Run("wrong audience", func(t *testing.T) {
		other := newProvider(op, "another-client")
		if _, err := other.verify(ctx, o, raw, pend.Nonce); err == nil || !strings.Contains(err.Error(), "audience") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		parts := strings.Split(raw, ".")
		sig := []byte(parts[2])
		if sig[10] == 'A' {
			sig[10] = 'B'
		} else {
			sig[10] = 'A'
		}
		bad := parts[0] + "." + parts[1] + "." + string(sig)
		if _, err := p.verify(ctx, o, bad, pend.Nonce); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		later := newProvider(op, ssotest.ClientID)
		later.now = func() time.Time { return time.Now().Add(24 * time.Hour) }
		var expired *oidc.TokenExpiredError
		if _, err := later.verify(ctx, o, raw, pend.Nonce); !errors.As(err, &expired) {
			t.Errorf("err = %v, want the token expired", err)
		}
	})
	t.Run("wrong issuer", func(t *testing.T) {
		q := New(Config{Issuer: op.Issuer + "/other", ClientID: ssotest.ClientID, ClientSecret: ssotest.ClientSecret}, nil)
		if _, _, err := q.Start(ctx, redirect, "/"); err == nil {
			t.Error("a provider whose discovery names another issuer was used")
		}
	})
	t.Run("provider down", func(t *testing.T) {
		down := newProvider(op, ssotest.ClientID)
		op.SetDown(true)
		defer op.SetDown(false)
		if _, _, err := down.Start(ctx, redirect, "/"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
}
