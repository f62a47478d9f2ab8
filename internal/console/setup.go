package console

import (
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// The first admin's setup link (control.NewSetupSecret) leads here: a
// form that sets the console password and signs in.

type setupPage struct {
	base
	Link    string
	Name    string
	Min     int
	Message string
}

func (c *Console) renderSetup(w http.ResponseWriter, r *http.Request, status int, p setupPage) {
	p.base = c.base(nil, "Set up", "")
	p.Min = control.MinPassword
	if err := c.render(w, r, status, "setup.html", p); err != nil {
		c.log.Error("render setup", "err", err)
	}
}

func (c *Console) setupPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	link := r.PathValue("link")
	name, err := c.ctl.SetupUserName(r.Context(), link)
	if err != nil {
		c.setupFailed(w, r, err)
		return
	}
	c.renderSetup(w, r, http.StatusOK, setupPage{Link: link, Name: name})
}

func (c *Console) setup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := parseForm(w, r, MaxSignInForm); err != nil {
		c.renderError(w, r, nil, http.StatusBadRequest, jit.ErrorMessage(err))
		return
	}
	p := setupPage{Link: r.PostForm.Get("link")}
	password := r.PostForm.Get("password")
	if password != r.PostForm.Get("confirm") {
		name, err := c.ctl.SetupUserName(r.Context(), p.Link)
		if err != nil {
			c.setupFailed(w, r, err)
			return
		}
		p.Name, p.Message = name, "The two passwords differ. Type the same one twice."
		c.renderSetup(w, r, http.StatusBadRequest, p)
		return
	}
	// SetupPassword checks the link first, and logs a refused one.
	secret, a, err := c.ctl.SetupPassword(r.Context(), p.Link, password, c.clientAddr(r))
	if jit.ErrorCode(err) == jit.EInvalid {
		p.Name, _ = c.ctl.SetupUserName(r.Context(), p.Link)
		p.Message = jit.ErrorMessage(err)
		c.renderSetup(w, r, http.StatusBadRequest, p)
		return
	}
	if err != nil {
		c.setupFailed(w, r, err)
		return
	}
	c.setCookie(w, r, secret, *a.Token.ExpiresAt)
	http.Redirect(w, r, "/machines", http.StatusSeeOther)
}

func (c *Console) setupFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch jit.ErrorCode(err) {
	case jit.EUnauthorized, jit.ERateLimited:
		c.renderError(w, r, nil, http.StatusUnauthorized, jit.ErrorMessage(err))
	case jit.EUnavailable:
		httpio.SetRetryAfter(w, err)
		c.renderError(w, r, nil, http.StatusServiceUnavailable, Unavailable)
	default:
		c.log.Error("setup link", "err", err)
		c.renderError(w, r, nil, http.StatusInternalServerError, "Setting the password failed on the server; try again.")
	}
}
