package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
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
		base = httpio.Scheme(r) + "://" + r.Host
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
	// ajar login --sso: the code goes back to the CLI on loopback.
	port, challenge := 0, r.URL.Query().Get("challenge")
	if p := r.URL.Query().Get("cli"); p != "" {
		var err error
		if port, err = strconv.Atoi(p); err != nil || port < 1024 || port > 65535 {
			c.renderError(w, r, nil, http.StatusBadRequest, "cli must be the CLI's loopback port, 1024 to 65535.")
			return
		}
		if err := control.ValidChallenge(challenge); err != nil {
			c.renderError(w, r, nil, http.StatusBadRequest, jit.ErrorMessage(err))
			return
		}
	}
	to, pend, err := c.sso.Start(r.Context(), c.redirectURL(r), next)
	if err != nil {
		c.ssoFailed(w, r, next, err)
		return
	}
	pend.CLIPort, pend.CLIChallenge = port, challenge
	b, _ := json.Marshal(pend)
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: ssoPath, MaxAge: int(SSOWait / time.Second),
		HttpOnly: true, Secure: httpio.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
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
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: ssoPath, MaxAge: -1, HttpOnly: true, Secure: httpio.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
	next := localPath(pend.Next, "/machines")
	id, err := c.sso.Finish(r.Context(), c.redirectURL(r), r.URL.Query(), pend)
	if err != nil {
		c.ssoFailed(w, r, next, err)
		return
	}
	challenge := ""
	if pend.CLIPort != 0 && control.ValidChallenge(pend.CLIChallenge) == nil {
		challenge = pend.CLIChallenge
	} else {
		pend.CLIPort = 0
	}
	secret, a, err := c.ctl.SSOSignIn(r.Context(), id, c.clientAddr(r), challenge)
	if err != nil {
		switch jit.ErrorCode(err) {
		case jit.EForbidden, jit.EInvalid, jit.ERateLimited:
			c.renderSignIn(w, r, http.StatusForbidden, signInPage{Next: next, Message: jit.ErrorMessage(err)})
		case jit.EUnavailable:
			httpio.SetRetryAfter(w, err)
			c.renderSignIn(w, r, http.StatusServiceUnavailable, signInPage{Next: next, Message: Unavailable})
		default:
			c.log.Error("sso sign-in", "err", err)
			c.renderSignIn(w, r, http.StatusInternalServerError, signInPage{Next: next, Message: "Sign-in failed on the server; try again."})
		}
		return
	}
	if pend.CLIPort != 0 {
		// Only loopback, only the port the CLI named: the code is worth
		// nothing without the CLI's verifier anyway.
		http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/callback?code=%s", pend.CLIPort, url.QueryEscape(secret)), http.StatusSeeOther)
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
