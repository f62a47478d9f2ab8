package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/sso"
)

// Sign-in through the organization's OpenID provider: /signin/sso sends
// the browser there, /signin/sso/callback takes its answer. What the
// round trip needs (state, nonce, PKCE verifier, the page to return to)
// waits in a short-lived HttpOnly cookie scoped to these paths.

const (
	ssoCookie   = "ajar_sso"
	ssoPath     = "/signin/sso"
	ssoCallback = ssoPath + "/callback"
	// SSOWait is how long a sign-in at the provider may take.
	SSOWait = 10 * time.Minute
)

// UseSSO adds "Sign in with <name>" beside the password form. publicURL
// is the address people reach ajard at (the redirect URI registered at
// the provider is publicURL/signin/sso/callback); "" takes it from each
// request.
func (c *Console) UseSSO(p *sso.Provider, publicURL string) {
	c.sso, c.publicURL = p, strings.TrimRight(publicURL, "/")
}

func (c *Console) redirectURL(r *http.Request) string {
	base := c.publicURL
	if base == "" {
		base = server.Scheme(r) + "://" + r.Host
	}
	return base + ssoCallback
}

func (c *Console) ssoStart(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c.sso == nil {
		c.renderError(w, r, nil, http.StatusNotFound, "Single sign-on is not configured on this server.")
		return
	}
	next := localPath(r.URL.Query().Get("next"), "/machines")
	to, pend, err := c.sso.Start(r.Context(), c.redirectURL(r), next)
	if err != nil {
		c.ssoFailed(w, r, next, err)
		return
	}
	b, _ := json.Marshal(pend)
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: ssoPath, MaxAge: int(SSOWait / time.Second),
		HttpOnly: true, Secure: server.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (c *Console) ssoFinish(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c.sso == nil {
		c.renderError(w, r, nil, http.StatusNotFound, "Single sign-on is not configured on this server.")
		return
	}
	var pend sso.Pending
	if ck, err := r.Cookie(ssoCookie); err == nil {
		if b, err := base64.RawURLEncoding.DecodeString(ck.Value); err == nil {
			json.Unmarshal(b, &pend)
		}
	}
	// One answer per sign-in: the cookie goes whatever happens.
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: ssoPath, MaxAge: -1, HttpOnly: true, Secure: server.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
	next := localPath(pend.Next, "/machines")
	id, err := c.sso.Finish(r.Context(), c.redirectURL(r), r.URL.Query(), pend)
	if err != nil {
		c.ssoFailed(w, r, next, err)
		return
	}
	secret, a, err := c.ctl.SSOSignIn(r.Context(), id, c.clientAddr(r), "")
	if err != nil {
		switch jit.ErrorCode(err) {
		case jit.EForbidden, jit.EInvalid, jit.ERateLimited:
			c.renderSignIn(w, r, http.StatusForbidden, signInPage{Next: next, Message: jit.ErrorMessage(err)})
		case jit.EUnavailable:
			w.Header().Set("Retry-After", jit.RetryAfterSeconds(server.RetryAfter(err)))
			c.renderSignIn(w, r, http.StatusServiceUnavailable, signInPage{Next: next, Message: Unavailable})
		default:
			c.log.Error("sso sign-in", "err", err)
			c.renderSignIn(w, r, http.StatusInternalServerError, signInPage{Next: next, Message: "Sign-in failed on the server; try again."})
		}
		return
	}
	c.setCookie(w, r, secret, *a.Token.ExpiresAt)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// ssoFailed shows the sign-in page with what went wrong at the provider;
// the password form stays, for local (break-glass) users.
func (c *Console) ssoFailed(w http.ResponseWriter, r *http.Request, next string, err error) {
	status := http.StatusUnauthorized
	msg := "Sign-in with " + c.sso.Name() + " failed: " + err.Error()
	if errors.Is(err, sso.ErrUnavailable) {
		status = http.StatusBadGateway
		msg = c.sso.Name() + " cannot be reached right now, so single sign-on is unavailable. Local users can still sign in with their password below."
	}
	c.log.Warn("sso sign-in refused", "err", err, "addr", c.clientAddr(r))
	c.ctl.SSORefused(r.Context(), c.clientAddr(r), jit.Errorf(jit.EUnauthorized, "%s", err.Error()))
	c.renderSignIn(w, r, status, signInPage{Next: next, Message: msg})
}

// ssoLink is the sign-in page's link to the provider.
func ssoLink(next string) string {
	return ssoPath + "?next=" + url.QueryEscape(next)
}
