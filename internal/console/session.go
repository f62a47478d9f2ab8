package console

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

type signInPage struct {
	base
	Next    string
	Name    string
	Message string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"), "/machines")
	if c.actor(r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c.renderSignIn(w, r, http.StatusOK, signInPage{Next: next})
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, p signInPage) {
	p.base = c.base(nil, "Sign in", "")
	if err := c.render(w, r, status, "signin.html", p); err != nil {
		c.log.Error("render sign-in", "err", err)
	}
}

// addrKey is the limiter key of an address: IPv6 hosts usually hold a
// whole /64, so it counts as one.
func addrKey(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.Unmap().String()
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p := signInPage{Next: "/machines"}
	if err := parseForm(w, r); err != nil {
		p.Message = jit.ErrorMessage(err)
		c.renderSignIn(w, r, http.StatusBadRequest, p)
		return
	}
	p.Next = localPath(r.PostForm.Get("next"), "/machines")
	p.Name = r.PostForm.Get("user")
	password := r.PostForm.Get("password")
	addr := c.clientAddr(r)
	name := p.Name
	if len(name) > 64 { // longer is no user name; keep keys small
		name = name[:64]
	}
	userKey, ak := "user:"+name, "addr:"+addrKey(addr)

	// Each attempt counts as a failure until it succeeds.
	userAt, userOK, retry := c.users.acquire(userKey)
	addrAt, addrOK, addrRetry := time.Time{}, false, time.Time{}
	if userOK {
		if addrAt, addrOK, addrRetry = c.addrs.acquire(ak); !addrOK {
			c.users.release(userKey, userAt)
			retry = addrRetry
		}
	}
	if !userOK || !addrOK {
		c.log.Warn("sign-in refused: too many failures", "user", p.Name, "addr", addr)
		wait := max(retry.Sub(c.ctl.Now()), 0)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		p.Message = fmt.Sprintf("Too many failed sign-ins for this user or from this address. Try again in %s.", fmtWait(wait))
		c.renderSignIn(w, r, http.StatusTooManyRequests, p)
		return
	}

	secret, a, err := c.ctl.SignIn(r.Context(), p.Name, password, addr)
	if err != nil {
		status := http.StatusUnauthorized
		if jit.ErrorCode(err) == jit.EUnauthorized {
			p.Message = "Wrong user name or password."
		} else {
			// Not the user's fault: take the attempt back.
			c.users.release(userKey, userAt)
			c.addrs.release(ak, addrAt)
			c.log.Error("sign-in", "err", err)
			status, p.Message = http.StatusInternalServerError, "Sign-in failed on the server; try again."
		}
		c.renderSignIn(w, r, status, p)
		return
	}
	c.users.reset(userKey)
	c.addrs.release(ak, addrAt)
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
