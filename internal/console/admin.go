package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// The admin pages: users (create, reset a password, delete), their role
// bindings, every API token, and agent enrollment tokens with the
// command that enrolls a host. Every form ends in a redirect; a refusal
// comes back as a draft naming the field.

type adminTab struct {
	Key, Label, URL string
}

var adminTabs = []adminTab{
	{"users", "Users and roles", "/admin/users"},
	{"tokens", "API tokens", "/admin/tokens"},
	{"enroll", "Agent enrollment", "/admin/enroll"},
}

// adminDraft is what an admin page shows after a form: an error on a
// field, or a secret shown once.
type adminDraft struct {
	Error, Field string
	Secret       string
	Token        jit.CreatedToken
}

type adminBase struct {
	base
	Tabs   []adminTab
	Tab    string
	Error  string
	Field  string
	Groups []string
	Roles  []string
}

func (c *Console) adminBase(r *http.Request, a *control.Actor, title, tab string) (adminBase, adminDraft) {
	p := adminBase{base: c.base(a, title, "admin"), Tabs: adminTabs, Tab: tab,
		Roles: []string{jit.RoleAdmin, jit.RoleJITAdmin, jit.RoleRequester, jit.RoleRequesterAnySource, jit.RoleReader, jit.RoleApprover}}
	var d adminDraft
	if v, ok := c.drafts.take(a.Name(), r.URL.Query().Get("draft"), c.ctl.Now()); ok {
		d, _ = v.(adminDraft)
		p.Error, p.Field = d.Error, d.Field
	}
	if gs, err := c.ctl.ListGroups(r.Context(), a); err == nil {
		for _, g := range gs {
			p.Groups = append(p.Groups, g.Name)
		}
	}
	return p, d
}

// adminFail goes back to page with err shown on its field; errors that
// are not the user's to fix go to the error page.
func (c *Console) adminFail(w http.ResponseWriter, r *http.Request, a *control.Actor, page string, err error) error {
	switch jit.ErrorCode(err) {
	case jit.EInvalid, jit.EConflict, jit.ENotFound:
	default:
		return err
	}
	id := c.drafts.put(a.Name(), adminDraft{Error: jit.ErrorMessage(err), Field: jit.ErrorTarget(err)}, c.ctl.Now())
	http.Redirect(w, r, page+"?draft="+id, http.StatusSeeOther)
	return nil
}

type userRow struct {
	jit.User
	Bindings []jit.RoleBinding
	Self     bool
}

type usersPage struct {
	adminBase
	Users []userRow
	Next  string
}

func (c *Console) adminUsers(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ab, _ := c.adminBase(r, a, "Users and roles", "users")
	p := usersPage{adminBase: ab}
	users, next, err := c.ctl.ListUsers(r.Context(), a, control.MaxPage, r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	bindings, err := c.ctl.ListRoleBindings(r.Context(), a, "")
	if err != nil {
		return err
	}
	byUser := map[string][]jit.RoleBinding{}
	for _, b := range bindings {
		byUser[b.User] = append(byUser[b.User], b)
	}
	for _, u := range users {
		p.Users = append(p.Users, userRow{User: u, Bindings: byUser[u.Name], Self: u.Name == a.Name()})
	}
	if next != "" {
		p.Next = "/admin/users?after=" + url.QueryEscape(next)
	}
	switch r.URL.Query().Get("done") {
	case "created":
		p.Notice = "User " + r.URL.Query().Get("user") + " created."
	case "password":
		p.Notice = "Password of " + r.URL.Query().Get("user") + " set; their console sessions were signed out."
	case "deleted":
		p.Notice = "User " + r.URL.Query().Get("user") + " deleted, with their tokens, roles and open access."
	case "bound":
		p.Notice = "Role given."
	case "unbound":
		p.Notice = "Role removed; access it allowed has ended."
	}
	return c.render(w, r, http.StatusOK, "users.html", p)
}

func (c *Console) adminCreateUser(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	u, err := c.ctl.CreateUser(r.Context(), a, jit.NewUser{Name: f.Get("name"), Password: f.Get("password")})
	if err != nil {
		return c.adminFail(w, r, a, "/admin/users", targeted(err, "name"))
	}
	if role := f.Get("role"); role != "" {
		if _, err := c.ctl.CreateRoleBinding(r.Context(), a, jit.RoleBinding{User: u.Name, Role: role, Group: f.Get("group")}); err != nil {
			return c.adminFail(w, r, a, "/admin/users", err)
		}
	}
	http.Redirect(w, r, "/admin/users?done=created&user="+url.QueryEscape(u.Name), http.StatusSeeOther)
	return nil
}

func (c *Console) adminSetPassword(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := c.ctl.SetPassword(r.Context(), a, name, "", r.PostForm.Get("password")); err != nil {
		return c.adminFail(w, r, a, "/admin/users", targeted(err, "password-"+name))
	}
	http.Redirect(w, r, "/admin/users?done=password&user="+url.QueryEscape(name), http.StatusSeeOther)
	return nil
}

type confirmPage struct {
	base
	Question, Detail, Action, Button, Cancel string
}

func (c *Console) adminDeleteUserPage(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	name := r.PathValue("name")
	if !a.Can(jit.PermAdmin, "") {
		return jit.Errorf(jit.EForbidden, "%s may not delete users", a.Name())
	}
	return c.render(w, r, http.StatusOK, "confirm.html", confirmPage{base: c.base(a, "Delete user "+name, "admin"),
		Question: "Delete the user " + name + "?",
		Detail:   "Their API tokens, console sessions and roles go with them, and access they have open now ends. The activity log keeps what they did.",
		Action:   "/admin/users/" + url.PathEscape(name) + "/delete", Button: "Delete " + name, Cancel: "/admin/users"})
}

func (c *Console) adminDeleteUser(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	name := r.PathValue("name")
	if err := c.ctl.DeleteUser(r.Context(), a, name); err != nil {
		return c.adminFail(w, r, a, "/admin/users", err)
	}
	http.Redirect(w, r, "/admin/users?done=deleted&user="+url.QueryEscape(name), http.StatusSeeOther)
	return nil
}

func (c *Console) adminBind(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	if _, err := c.ctl.CreateRoleBinding(r.Context(), a, jit.RoleBinding{User: f.Get("user"), Role: f.Get("role"), Group: f.Get("group")}); err != nil {
		return c.adminFail(w, r, a, "/admin/users", targeted(err, "bind-"+f.Get("user")))
	}
	http.Redirect(w, r, "/admin/users?done=bound", http.StatusSeeOther)
	return nil
}

func (c *Console) adminUnbind(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := c.ctl.DeleteRoleBinding(r.Context(), a, r.PathValue("id")); err != nil {
		return c.adminFail(w, r, a, "/admin/users", err)
	}
	http.Redirect(w, r, "/admin/users?done=unbound", http.StatusSeeOther)
	return nil
}

type tokensPage struct {
	adminBase
	Tokens  []jit.Token
	Created *jit.CreatedToken
	Next    string
	Users   []string
}

func (c *Console) adminTokens(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ab, d := c.adminBase(r, a, "API tokens", "tokens")
	p := tokensPage{adminBase: ab}
	if d.Token.Secret != "" && d.Token.Kind == jit.TokenUser {
		p.Created = &d.Token
	}
	q := r.URL.Query()
	tokens, next, err := c.ctl.ListTokens(r.Context(), a, q.Get("user"), control.MaxPage, q.Get("cursor"))
	if err != nil {
		return err
	}
	p.Tokens = tokens
	if next != "" {
		p.Next = "/admin/tokens?cursor=" + url.QueryEscape(next)
	}
	if users, _, err := c.ctl.ListUsers(r.Context(), a, control.MaxPage, ""); err == nil {
		for _, u := range users {
			p.Users = append(p.Users, u.Name)
		}
	}
	if q.Get("done") == "revoked" {
		p.Notice = "Token revoked: it no longer works."
	}
	return c.render(w, r, http.StatusOK, "tokens.html", p)
}

func (c *Console) adminCreateToken(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	tok, err := c.ctl.CreateToken(r.Context(), a, jit.NewToken{User: f.Get("user"), Name: f.Get("name"), TTL: f.Get("ttl")})
	if err != nil {
		return c.adminFail(w, r, a, "/admin/tokens", err)
	}
	// The secret is shown once: the draft is taken when shown.
	id := c.drafts.put(a.Name(), adminDraft{Token: tok}, c.ctl.Now())
	http.Redirect(w, r, "/admin/tokens?draft="+id, http.StatusSeeOther)
	return nil
}

type enrollPage struct {
	adminBase
	Created *jit.CreatedToken
	Command string
}

func (c *Console) adminEnroll(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ab, d := c.adminBase(r, a, "Agent enrollment", "enroll")
	p := enrollPage{adminBase: ab}
	if d.Token.Secret != "" && d.Token.Kind == jit.TokenEnroll {
		p.Created = &d.Token
		p.Command = "ajar-agent enroll --server " + c.serverURL(r) + " --token " + d.Token.Secret
		if c.fingerprint != "" {
			p.Command += " --ca-fingerprint " + c.fingerprint
		}
	}
	return c.render(w, r, http.StatusOK, "enroll.html", p)
}

func (c *Console) adminCreateEnroll(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	uses := 1
	if s := f.Get("uses"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return c.adminFail(w, r, a, "/admin/enroll", jit.Invalid("uses", "uses must be a number, got %q", s))
		}
		uses = n
	}
	tok, err := c.ctl.CreateEnrollToken(r.Context(), a, jit.NewEnrollToken{Group: f.Get("group"), TTL: f.Get("ttl"), Uses: uses})
	if err != nil {
		return c.adminFail(w, r, a, "/admin/enroll", err)
	}
	id := c.drafts.put(a.Name(), adminDraft{Token: tok}, c.ctl.Now())
	http.Redirect(w, r, "/admin/enroll?draft="+id, http.StatusSeeOther)
	return nil
}

// serverURL is the address agents and browsers reach this server at.
func (c *Console) serverURL(r *http.Request) string {
	if c.publicURL != "" {
		return c.publicURL
	}
	return fmt.Sprintf("%s://%s", httpio.Scheme(r), r.Host)
}

// ShowFingerprint makes the enroll command the console shows pin the
// server's self-signed certificate (--ca-fingerprint).
func (c *Console) ShowFingerprint(fp string) { c.fingerprint = fp }

// targeted gives err a target when it has none.
func targeted(err error, target string) error {
	if e, ok := err.(*jit.Error); ok && e.Target == "" {
		c := *e
		c.Target = target
		return &c
	}
	return err
}
