// Package console is ajar's web console: server-rendered HTML pages over
// the control plane, for operators, engineers and auditors. Templates and
// static files are embedded in the binary; the pages work without
// JavaScript, and a little plain JavaScript adds the live countdown, the
// request dialog and in-page editing of policy rows.
//
// A session is a short-lived user token kept in an HttpOnly cookie
// (control.SignIn); every state-changing form is guarded by Go's
// cross-origin protection; failed sign-ins are limited per user and per
// address. Permissions are the control plane's: the console hides what a
// role cannot do, and the control plane refuses it anyway.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CookieName is the session cookie.
const CookieName = "ajar_session"

// Console serves the web console.
type Console struct {
	ctl        *control.Control
	log        *slog.Logger
	clientAddr func(*http.Request) netip.Addr
	pages      map[string]*template.Template
	static     http.Handler
	version    string // of the static files, for cache busting
	handler    http.Handler
	sso        *sso.Provider // nil: no single sign-on (UseSSO)
	publicURL  string
	drafts     drafts
	// fingerprint is the server's self-signed certificate's, for the
	// enroll command (ShowFingerprint).
	fingerprint string
}

// New returns the console over ctl. clientAddr tells the address a request
// came from (the API server's ClientAddr, which knows trusted proxies).
func New(ctl *control.Control, log *slog.Logger, clientAddr func(*http.Request) netip.Addr) *Console {
	c := &Console{
		ctl: ctl, log: log, clientAddr: clientAddr,
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	c.version = staticVersion(sub)
	c.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	c.pages = parsePages(c.funcs())

	mux := http.NewServeMux()
	c.routes(mux)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"), "addr", c.clientAddr(r))
		c.renderError(w, r, nil, http.StatusForbidden, "This form was sent from another site, so it was refused. Reload the page and try again.")
	}))
	c.handler = cop.Handler(mux)
	return c
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	// Forms are read by the handlers (parseForm), after the session
	// check: no body is read for a client that is not signed in.
	if err := httpio.CheckText(r); err != nil {
		c.renderError(w, r, nil, http.StatusBadRequest, jit.ErrorMessage(err))
		return
	}
	c.handler.ServeHTTP(w, r)
}

// routes lists every route of the console.
func (c *Console) routes(m *http.ServeMux) {
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/machines", http.StatusSeeOther)
	})
	m.Handle("GET /static/", c.serveStatic())
	m.HandleFunc("GET /signin", c.signInPage)
	m.HandleFunc("POST /signin", c.signIn)
	m.HandleFunc("POST /signout", c.page(c.signOut))
	m.HandleFunc("GET /signin/sso", c.ssoStart)
	m.HandleFunc("GET /signin/sso/callback", c.ssoFinish)
	m.HandleFunc("GET /setup/{link}", c.setupPage)
	m.HandleFunc("POST /setup", c.setup)

	m.HandleFunc("GET /machines", c.page(c.machines))
	m.HandleFunc("GET /machines/{id}", c.page(c.machine))
	m.HandleFunc("POST /machines/{id}/policy", c.page(c.savePolicy))
	m.HandleFunc("GET /machines/{id}/disable", c.page(c.disablePage))
	m.HandleFunc("POST /machines/{id}/disable", c.page(c.disable))
	m.HandleFunc("GET /machines/{id}/request", c.page(c.requestPage))
	m.HandleFunc("POST /machines/{id}/request", c.page(c.request, requestResume))
	m.HandleFunc("POST /grants/{id}/revoke", c.page(c.revoke))
	m.HandleFunc("POST /machines/enable", c.page(c.enableSelected))
	m.HandleFunc("GET /request", c.page(c.multiRequestPage))
	m.HandleFunc("POST /request", c.page(c.multiRequest))
	m.HandleFunc("GET /access", c.page(c.access))
	m.HandleFunc("GET /account", c.page(c.account))
	m.HandleFunc("POST /account/password", c.page(c.changePassword))
	m.HandleFunc("POST /account/tokens/{id}/revoke", c.page(c.revokeOwnToken))
	m.HandleFunc("GET /requests", c.page(c.requests))
	m.HandleFunc("POST /requests/{id}/{action}", c.page(c.decideRequest))

	m.HandleFunc("GET /admin/users", c.page(c.adminUsers))
	m.HandleFunc("POST /admin/users", c.page(c.adminCreateUser))
	m.HandleFunc("POST /admin/users/{name}/password", c.page(c.adminSetPassword))
	m.HandleFunc("GET /admin/users/{name}/delete", c.page(c.adminDeleteUserPage))
	m.HandleFunc("POST /admin/users/{name}/delete", c.page(c.adminDeleteUser))
	m.HandleFunc("POST /admin/bindings", c.page(c.adminBind))
	m.HandleFunc("POST /admin/bindings/{id}/delete", c.page(c.adminUnbind))
	m.HandleFunc("GET /admin/tokens", c.page(c.adminTokens))
	m.HandleFunc("POST /admin/tokens", c.page(c.adminCreateToken))
	m.HandleFunc("GET /admin/enroll", c.page(c.adminEnroll))
	m.HandleFunc("POST /admin/enroll", c.page(c.adminCreateEnroll))

	m.HandleFunc("GET /activity", c.page(c.activity))
	m.HandleFunc("GET /activity.csv", c.page(c.activityCSV))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a, _ := c.actor(r)
		c.renderError(w, r, a, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
}

func (c *Console) serveStatic() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("v") == c.version {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		c.static.ServeHTTP(w, r)
	})
}

func staticVersion(fsys fs.FS) string {
	h := sha256.New()
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(fsys, p)
			fmt.Fprintf(h, "%s %d\n", p, len(b))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// handler is a console handler for a signed-in user; it writes its
// response or returns an error to show.
type handler func(w http.ResponseWriter, r *http.Request, a *control.Actor) error

// page wraps h with the session check, panic recovery and error pages.
// A visitor without a session goes to the sign-in page, which returns to
// where they were: the page they asked for, or for a form sent after the
// session ended, the page the form was on (resume, when given, tells
// where that is and keeps what was typed).
func (c *Console) page(h handler, resume ...func(*http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("panic in console handler", "path", r.URL.Path, "panic", p)
				c.renderError(w, r, nil, http.StatusInternalServerError, "Something went wrong on the server.")
			}
		}()
		w.Header().Set("Cache-Control", "no-store")
		a, err := c.actor(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if a == nil {
			c.clearCookie(w, r)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			next := refererPath(r)
			if len(resume) > 0 {
				next = resume[0](r)
			}
			http.Redirect(w, r, "/signin?ended=1&next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		if err := h(w, r, a); err != nil {
			c.fail(w, r, a, err)
		}
	}
}

// Unavailable is what the console shows while ajard cannot reach its
// database.
const Unavailable = "ajar is temporarily unavailable: the server cannot reach its database. Nothing was changed. Try again in a few seconds."

// fail shows the error page for err: its message, or for an outage the
// unavailable page with Retry-After; internal errors are logged, not
// shown.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, a *control.Actor, err error) {
	st, msg := httpio.StatusOf(err), jit.ErrorMessage(err)
	switch st {
	case http.StatusServiceUnavailable:
		c.log.Warn("console request failed: unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		httpio.SetRetryAfter(w, err)
		msg = Unavailable
	case http.StatusTooManyRequests:
		if d := jit.ErrorRetryAfter(err); d > 0 {
			w.Header().Set("Retry-After", jit.RetryAfterSeconds(d))
		}
	case http.StatusInternalServerError:
		c.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	c.renderError(w, r, a, st, msg)
}

// actor returns the signed-in user of r, or nil when r has no valid
// session. An error means the session could not be checked (an outage).
func (c *Console) actor(r *http.Request) (*control.Actor, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	a, err := c.ctl.Authenticate(r.Context(), ck.Value, c.clientAddr(r))
	if err != nil {
		if code := jit.ErrorCode(err); code == jit.EUnavailable || code == jit.EInternal {
			return nil, err
		}
		return nil, nil
	}
	if a.Token.Kind != jit.TokenUser {
		return nil, nil
	}
	return a, nil
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, secret string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: secret, Path: "/", Expires: expires, HttpOnly: true, Secure: httpio.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(CookieName); err != nil {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: httpio.Scheme(r) == "https", SameSite: http.SameSiteLaxMode})
}

// localPath returns p when it is a path on this site, else def: redirect
// targets taken from forms must not lead elsewhere.
func localPath(p, def string) string {
	// No backslash or control character: browsers drop tabs and line
	// breaks, and read a backslash as a slash, turning "/\t/host" into "//host".
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsFunc(p, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }) {
		return def
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return def
	}
	return p
}

// refererPath is the console page a form was sent from, or /machines.
func refererPath(r *http.Request) string {
	ref, err := url.Parse(r.Referer())
	if err != nil || ref.Host != r.Host {
		return "/machines"
	}
	return localPath(ref.RequestURI(), "/machines")
}

// base is what every page's layout shows.
type base struct {
	Title   string
	Nav     string // machines, activity
	User    string
	Roles   string
	Admin   bool // shows the Admin pages in the navigation
	Notice  string
	Problem string
}

func (c *Console) base(a *control.Actor, title, nav string) base {
	b := base{Title: title, Nav: nav}
	if a != nil {
		b.User, b.Roles, b.Admin = a.Name(), roleSummary(a.Bindings), a.Can(jit.PermAdmin, "")
	}
	return b
}

func roleSummary(bs []jit.RoleBinding) string {
	var parts []string
	for _, b := range bs {
		if b.Group == jit.AllGroups {
			parts = append(parts, b.Role+" (all groups)")
		} else {
			parts = append(parts, b.Role+" in "+b.Group)
		}
	}
	if len(parts) == 0 {
		return "no roles"
	}
	return strings.Join(parts, ", ")
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) error {
	t, ok := c.pages[name]
	if !ok {
		return fmt.Errorf("no template %q", name)
	}
	// Rendered in full first, so that a template error becomes an error
	// page rather than half a page.
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) // an error means the client went away
	return nil
}

type errorPage struct {
	base
	Status  int
	Message string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, a *control.Actor, status int, msg string) {
	p := errorPage{base: c.base(a, http.StatusText(status), ""), Status: status, Message: msg}
	if err := c.render(w, r, status, "error.html", p); err != nil {
		c.log.Error("render error page", "err", err)
		http.Error(w, msg, status)
	}
}

// Form limits: a sign-in form (read before anyone is known) and any other
// form (read only for a signed-in user).
const (
	MaxSignInForm = 16 << 10
	MaxForm       = httpio.MaxBody
)

// parseForm reads the form of a POST, of at most limit bytes, into
// r.PostForm. A form that is too large, malformed or holds text no store
// keeps is refused; nothing of it is used.
func parseForm(w http.ResponseWriter, r *http.Request, limit int64) error {
	if err := httpio.ReserveBody(r, limit); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		r.PostForm, r.Form = nil, nil
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jit.Errorf(jit.ETooLarge, "the form is larger than %d bytes", limit)
		}
		return jit.Errorf(jit.EInvalid, "the form could not be read: %s", strings.ToValidUTF8(err.Error(), "?"))
	}
	for k, vs := range r.PostForm {
		for _, v := range vs {
			if !jit.Storable(k) || !jit.Storable(v) {
				r.PostForm, r.Form = nil, nil
				return jit.Invalid(strings.ToValidUTF8(k, "?"), "form fields must be UTF-8 text without NUL characters")
			}
		}
	}
	return nil
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"static":  func(name string) string { return "/static/" + path.Clean(name) + "?v=" + c.version },
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"when":    whenHTML,
		"pwhen": func(t *time.Time) template.HTML {
			if t == nil || t.IsZero() {
				return "—"
			}
			return whenHTML(*t)
		},
		"duration": fmtISO,
		"join":     strings.Join,
		"ended":    jit.EndedState,
		"left":     func(end time.Time) string { return fmtLeft(end.Sub(c.ctl.Now())) },
		"now":      func() string { return c.ctl.Now().Format(time.RFC3339Nano) },
	}
}

// whenHTML is a time as pages show it: in UTC, which the page's script
// turns into the viewer's time zone (keeping UTC on hover).
func whenHTML(t time.Time) template.HTML {
	if t.IsZero() {
		return "—"
	}
	return template.HTML(`<time datetime="` + t.UTC().Format(time.RFC3339) + `" data-local>` + fmtTime(t) + `</time>`)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// fmtISO shows an ISO 8601 duration the way people say it: "3 hours".
func fmtISO(s string) string {
	d, err := jit.ParseISODuration(s)
	if err != nil {
		return s
	}
	return fmtDuration(d)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		if d > time.Hour {
			return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
		}
		return plural(int(d/time.Minute), "minute")
	}
	return d.String()
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// fmtLeft shows the time left of a grant as the countdown starts it.
func fmtLeft(d time.Duration) string {
	if d <= 0 {
		return "ended"
	}
	s := int((d + time.Second - 1) / time.Second)
	h, m, sec := s/3600, s/60%60, s%60
	if h > 0 {
		return fmt.Sprintf("%dh %02dm %02ds", h, m, sec)
	}
	return fmt.Sprintf("%dm %02ds", m, sec)
}
