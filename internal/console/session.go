package console

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

type signInPage struct {
	base
	Next    string
	Name    string
	Message string
	// Ended: the session ended while the user was at work; signing in
	// returns them there.
	Ended, Kept bool
	// Setup is set while the first admin has no console password: the
	// page then says how to get in.
	Setup     bool
	SetupUser string
	// SSOName and SSOLink offer single sign-on, when configured.
	SSOName, SSOLink string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"), "/machines")
	if a, _ := c.actor(r); a != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	p := signInPage{Next: next}
	if r.URL.Query().Get("ended") != "" {
		p.Ended, p.Kept = true, strings.Contains(next, "/request?")
	}
	c.renderSignIn(w, r, http.StatusOK, p)
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, p signInPage) {
	p.base = c.base(nil, "Sign in", "")
	p.Setup, p.SetupUser = c.ctl.SetupPending(r.Context()), control.SetupUser
	if c.sso != nil {
		p.SSOName, p.SSOLink = c.sso.Name(), ssoLink(p.Next)
	}
	if err := c.render(w, r, status, "signin.html", p); err != nil {
		c.log.Error("render sign-in", "err", err)
	}
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p := signInPage{Next: "/machines"}
	if err := parseForm(w, r, MaxSignInForm); err != nil {
		p.Message = jit.ErrorMessage(err)
		c.renderSignIn(w, r, http.StatusBadRequest, p)
		return
	}
	p.Next = localPath(r.PostForm.Get("next"), "/machines")
	p.Name = r.PostForm.Get("user")
	password := r.PostForm.Get("password")
	addr := c.clientAddr(r)

	// The control plane limits guesses (see control.SignIn).
	secret, a, err := c.ctl.SignIn(r.Context(), p.Name, password, addr)
	if err != nil {
		status := http.StatusUnauthorized
		switch jit.ErrorCode(err) {
		case jit.EUnauthorized:
			p.Message = "Wrong user name or password."
			if strings.HasPrefix(password, "ajar_") {
				p.Message = "Wrong user name or password. That looks like an API token: the console takes a console password, which the setup link ajard printed at start sets (or: ajar user passwd NAME --password-stdin)."
			}
		case jit.EUnavailable:
			httpio.SetRetryAfter(w, err)
			status, p.Message = http.StatusServiceUnavailable, Unavailable
		case jit.ERateLimited:
			wait := jit.ErrorRetryAfter(err)
			w.Header().Set("Retry-After", jit.RetryAfterSeconds(wait))
			status = http.StatusTooManyRequests
			p.Message = fmt.Sprintf("Too many failed sign-ins for this user from this address, or too many at once. Try again in %s.", fmtWait(wait))
		default:
			c.log.Error("sign-in", "err", err)
			status, p.Message = http.StatusInternalServerError, "Sign-in failed on the server; try again."
		}
		c.renderSignIn(w, r, status, p)
		return
	}
	c.setCookie(w, r, secret, *a.Token.ExpiresAt)
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

func fmtWait(d time.Duration) string {
	if d < time.Minute {
		return plural(int(d.Seconds())+1, "second")
	}
	return plural(int((d+time.Minute-1)/time.Minute), "minute")
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := c.ctl.SignOut(r.Context(), a); err != nil {
		return err
	}
	c.clearCookie(w, r)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}
