package console

import (
	"fmt"
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// accountPage is the signed-in user's own settings: their password and
// their API tokens (console sessions among them).
type accountPage struct {
	base
	HasPassword bool
	Tokens      []tokenRow
	// PasswordError is what refused the last password change, on the
	// field it names.
	PasswordError, PasswordField string
}

type tokenRow struct {
	jit.Token
	Current bool // the session of this page
}

// passwordDraft is what a refused password change shows again: the
// error, never the passwords.
type passwordDraft struct{ Error, Field string }

func (c *Console) account(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ctx := r.Context()
	tokens, _, err := c.ctl.ListTokens(ctx, a, a.Name(), control.MaxPage, "")
	if err != nil {
		return err
	}
	p := accountPage{base: c.base(a, "My account", "account")}
	for _, t := range tokens {
		p.Tokens = append(p.Tokens, tokenRow{Token: t, Current: t.ID == a.Token.ID})
	}
	q := r.URL.Query()
	if d, ok := c.drafts.get(a.Name(), q.Get("draft"), c.ctl.Now()); ok {
		if pd, ok := d.(passwordDraft); ok {
			p.PasswordError, p.PasswordField = pd.Error, pd.Field
		}
	}
	switch q.Get("done") {
	case "password":
		p.Notice = "Password changed."
		if n := q.Get("ended"); n != "" && n != "0" {
			p.Notice += " Your " + n + " other console session(s) were signed out."
		}
	case "token":
		p.Notice = "Token revoked: it no longer works."
	}
	return c.render(w, r, http.StatusOK, "account.html", p)
}

func (c *Console) changePassword(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	fail := func(field, msg string) error {
		id := c.drafts.put(a.Name(), passwordDraft{Error: msg, Field: field}, c.ctl.Now())
		http.Redirect(w, r, "/account?draft="+id+"#password", http.StatusSeeOther)
		return nil
	}
	if f.Get("password") != f.Get("confirm") {
		return fail("confirm", "The new password and its confirmation differ.")
	}
	ended, err := c.ctl.SetPassword(r.Context(), a, a.Name(), f.Get("current"), f.Get("password"))
	if err != nil {
		if jit.ErrorCode(err) != jit.EInvalid {
			return err
		}
		field := "password"
		if jit.ErrorTarget(err) == "currentPassword" {
			field = "current"
		}
		return fail(field, jit.ErrorMessage(err))
	}
	http.Redirect(w, r, fmt.Sprintf("/account?done=password&ended=%d", ended), http.StatusSeeOther)
	return nil
}

func (c *Console) revokeOwnToken(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := c.ctl.RevokeToken(r.Context(), a, id); err != nil {
		return err
	}
	if id == a.Token.ID { // this very session
		c.clearCookie(w, r)
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return nil
	}
	back := "/account?done=token"
	if r.PostForm.Get("back") == "admin" {
		back = "/admin/tokens?done=revoked"
	}
	http.Redirect(w, r, back+"#tokens", http.StatusSeeOther)
	return nil
}
