package console_test

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/console"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// Passwords of the test users.
const (
	adminPassword     = "admin-password-123"
	requesterPassword = "rachel-password-123"
	readerPassword    = "rita-password-1234"
)

// fixture is a server with machines in each of the three tabs and users
// of each role.
type fixture struct {
	s                            *ajardtest.Server
	web, db, app, old, nonft, lb jit.VM
}

// newFixture starts ajard and fills it:
//   - web-1 (prod): JIT enabled, port 22/TCP          -> Configured
//   - db-1 (prod): agent reports 22 and 5432 listening -> Not configured, Unhealthy
//   - app-1 (prod): agent reports only 8080            -> Not configured, Healthy
//   - old-1 (dev): agent never connected               -> Unsupported
//   - nonft-1 (prod): agent says it cannot enforce     -> Unsupported
//   - lb-1 (dev): JIT enabled                          -> Configured
//
// Users: admin (admin everywhere), rachel (requester in prod), rita
// (reader everywhere).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s := ajardtest.Start(t, ajardtest.Options{})
	a := s.Admin
	f := &fixture{s: s}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"prod", "dev"} {
		_, err := a.CreateGroup(ctx, g)
		check(err)
	}
	if _, err := a.SetPassword(ctx, "admin", "", adminPassword); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, password, role, group string }{
		{"rachel", requesterPassword, jit.RoleRequester, "prod"},
		{"rita", readerPassword, jit.RoleReader, jit.AllGroups},
	} {
		_, err := a.CreateUser(ctx, jit.NewUser{Name: u.name, Password: u.password})
		check(err)
		_, err = a.CreateRoleBinding(ctx, u.name, u.role, u.group)
		check(err)
	}

	var err error
	f.web, err = a.CreateVM(ctx, jit.NewVM{Name: "web-1", Group: "prod", Addresses: []string{"10.0.0.10"}})
	check(err)
	_, err = a.PutPolicy(ctx, f.web.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}})
	check(err)
	f.lb, err = a.CreateVM(ctx, jit.NewVM{Name: "lb-1", Group: "dev"})
	check(err)
	_, err = a.PutPolicy(ctx, f.lb.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "*"}}})
	check(err)
	f.old, err = a.CreateVM(ctx, jit.NewVM{Name: "old-1", Group: "dev"})
	check(err)

	enroll, err := a.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "prod", Uses: 10})
	check(err)
	agent := func(name string, r jit.Report) jit.VM {
		t.Helper()
		e, err := s.Client(enroll.Secret).Enroll(ctx, jit.Enrollment{Name: name, Hostname: name + ".example", OS: "linux", Addresses: []string{"10.0.1.1"}})
		check(err)
		check(s.Client(e.Secret).Report(ctx, r))
		return e.VM
	}
	f.db = agent("db-1", jit.Report{Enforceable: true, Listening: []jit.Socket{{Protocol: "TCP", Port: 22}, {Protocol: "TCP", Port: 5432}}})
	f.app = agent("app-1", jit.Report{Enforceable: true, Listening: []jit.Socket{{Protocol: "TCP", Port: 8080}}})
	f.nonft = agent("nonft-1", jit.Report{Enforceable: false, Reason: "nftables is not available on the host"})
	return f
}

// vmNames returns the machines the current tab lists.
func vmNames(t *testing.T, ctx context.Context) []string {
	return eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#vms tbody tr[data-vm]')).map(r => r.dataset.vm)`)
}

func signInBrowser(t *testing.T, ctx context.Context, base, user, password string) {
	t.Helper()
	run(t, ctx, "sign in as "+user,
		chromedp.Navigate(base+"/signin"),
		visible("#user"),
		chromedp.Clear(chromedp.CSS("#user")),
		keys("#user", user),
		keys("#password", password),
		click("#signin-submit"),
		visible("#vms"))
}

// TestConsole drives the console in chromium against a real ajard: an
// operator's and a requester's day, and the refusals around them.
func TestConsole(t *testing.T) {
	ctx := newBrowser(t)
	shot := newShots(t)
	f := newFixture(t)
	base := f.s.URL
	api := f.s.Admin
	bg := context.Background()

	// Signing in: the console sends strangers to the sign-in page, refuses
	// a wrong password with a message, and lands on the machines.
	run(t, ctx, "open the console",
		chromedp.Navigate(base+"/"),
		visible("#user"),
		keys("#user", "admin"))
	shot.take(ctx, "signin")
	run(t, ctx, "wrong password",
		keys("#password", "not-the-password"),
		click("#signin-submit"),
		visible("#signin-error"))
	mustContain(t, "sign-in error", textOf(t, ctx, "#signin-error"), "Wrong user name or password")
	run(t, ctx, "right password",
		keys("#password", adminPassword),
		click("#signin-submit"),
		visible("#vms"))
	loc := get(t, ctx, "location", chromedp.Location())
	if loc != base+"/machines" {
		t.Errorf("after sign-in at %s, want %s/machines", loc, base)
	}
	ck := sessionCookie(t, ctx, base)
	if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteLax || ck.Secure || ck.Path != "/" {
		t.Errorf("session cookie: httpOnly=%v sameSite=%v secure=%v path=%q; want HttpOnly, Lax, not Secure over plain HTTP, /", ck.HTTPOnly, ck.SameSite, ck.Secure, ck.Path)
	}
	if exp := time.Unix(int64(ck.Expires), 0); exp.Before(time.Now().Add(11*time.Hour)) || exp.After(time.Now().Add(13*time.Hour)) {
		t.Errorf("session cookie expires %v, want in about 12 hours", exp)
	}

	// The three tabs.
	if got := vmNames(t, ctx); !slices.Equal(got, []string{"lb-1", "web-1"}) {
		t.Errorf("Configured tab lists %s, want lb-1, web-1", fmtList(got))
	}
	shot.take(ctx, "machines-configured")
	run(t, ctx, "Not configured tab", click("#tab-not-configured"), visible(`#vms[aria-describedby="tab-not-configured"]`))
	if got := vmNames(t, ctx); !slices.Equal(got, []string{"db-1", "app-1"}) {
		t.Errorf("Not configured tab lists %s, want db-1 (unhealthy first), app-1", fmtList(got))
	}
	mustContain(t, "db-1 row", textOf(t, ctx, `tr[data-vm="db-1"]`), "Unhealthy", "JIT recommended", "Enable JIT")
	mustContain(t, "app-1 row", textOf(t, ctx, `tr[data-vm="app-1"]`), "Healthy")
	shot.take(ctx, "machines-not-configured")
	run(t, ctx, "Unsupported tab", click("#tab-unsupported"), visible(`#vms[aria-describedby="tab-unsupported"]`))
	if got := vmNames(t, ctx); !slices.Equal(got, []string{"old-1", "nonft-1"}) {
		t.Errorf("Unsupported tab lists %s, want old-1 (dev), nonft-1 (prod)", fmtList(got))
	}
	mustContain(t, "old-1 row", textOf(t, ctx, `tr[data-vm="old-1"]`), "agent never connected")
	mustContain(t, "nonft-1 row", textOf(t, ctx, `tr[data-vm="nonft-1"]`), "nftables is not available")
	shot.take(ctx, "machines-unsupported")

	// Search and group filter keep the tab.
	run(t, ctx, "search", keys("#q", "old"), click("#filter-apply"),
		visible(`#q[value="old"]`))
	if got := vmNames(t, ctx); !slices.Equal(got, []string{"old-1"}) {
		t.Errorf("search old lists %s, want old-1", fmtList(got))
	}
	run(t, ctx, "group filter", chromedp.Navigate(base+"/machines?tab=configured"), visible("#group"),
		setValue("#group", "dev"), click("#filter-apply"),
		ready(`#group option[value="dev"][selected]`))
	if got := vmNames(t, ctx); !slices.Equal(got, []string{"lb-1"}) {
		t.Errorf("group dev, Configured tab lists %s, want lb-1", fmtList(got))
	}

	// Phone width: nothing sticks out sideways; tables scroll in their box.
	run(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+"/machines?tab=not-configured"),
		visible("#vms"))
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at phone width the page is %d px wide, want at most 390", w)
	}
	shot.take(ctx, "machines-phone")
	run(t, ctx, "desktop width", chromedp.EmulateViewport(1280, 800))

	// Enable JIT on db-1 from the recommendation: add two ports, remove
	// one, save.
	run(t, ctx, "open db-1", chromedp.Navigate(base+"/machines/"+f.db.ID), visible("#recommended-note"))
	ports := func() []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#policy-rows input[name=port]')).map(i => i.value)`)
	}
	if got := ports(); !slices.Equal(got, []string{"22"}) {
		t.Fatalf("recommended ports %s, want 22", fmtList(got))
	}
	if eval[bool](t, ctx, `!!document.querySelector('#request-open')`) {
		t.Error("Request access offered on a machine without JIT")
	}
	run(t, ctx, "add two ports",
		click("#policy-add"),
		keys("#policy-rows tr:nth-child(2) input[name=port]", "3389"),
		click("#policy-add"),
		keys("#policy-rows tr:nth-child(3) input[name=port]", "8443"),
		setValue("#policy-rows tr:nth-child(3) select[name=max]", "PT1H"))
	if got := ports(); !slices.Equal(got, []string{"22", "3389", "8443"}) {
		t.Fatalf("after Add: ports %s", fmtList(got))
	}
	if id := eval[string](t, ctx, `document.activeElement.id`); !strings.HasPrefix(id, "port-") {
		t.Errorf("after Add, focus is on %q, want the new port field", id)
	}
	run(t, ctx, "remove 3389", click("#policy-rows tr:nth-child(2) [data-remove-row]"))
	if got := ports(); !slices.Equal(got, []string{"22", "8443"}) {
		t.Fatalf("after Remove: ports %s", fmtList(got))
	}
	shot.take(ctx, "machine-enable-jit")
	run(t, ctx, "save", click("#policy-save"), visible(".banner.ok"))
	mustContain(t, "notice", textOf(t, ctx, ".banner.ok"), "JIT policy saved")
	pol, err := api.GetPolicy(bg, f.db.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []jit.PortRule{
		{Number: 22, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
		{Number: 8443, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"},
	}
	if !slices.EqualFunc(pol.Ports, want, func(a, b jit.PortRule) bool {
		return a.Number == b.Number && a.Protocol == b.Protocol && slices.Equal(a.AllowedSourceAddressPrefixes, b.AllowedSourceAddressPrefixes) && a.MaxRequestAccessDuration == b.MaxRequestAccessDuration
	}) || pol.UpdatedBy != "admin" {
		t.Errorf("saved policy %+v by %s, want %+v by admin", pol.Ports, pol.UpdatedBy, want)
	}

	// The Request access dialog works from the keyboard: Enter opens it
	// with focus inside, Escape closes it and focus returns.
	run(t, ctx, "dialog by keyboard",
		visible("#request-open"),
		focus("#request-open"),
		chromedp.KeyEvent(kb.Enter),
		visible("#request-dialog[open]"))
	if !eval[bool](t, ctx, `!!document.activeElement.closest('#request-dialog')`) {
		t.Error("focus is not inside the open dialog")
	}
	run(t, ctx, "escape", chromedp.KeyEvent(kb.Escape), gone("#request-dialog[open]"))
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "request-open" {
		t.Errorf("after closing the dialog, focus is on %q, want request-open", id)
	}

	// Request access for My IP, port 22 only, for one hour.
	run(t, ctx, "open the dialog", click("#request-open"), visible("#request-dialog[open]"))
	if ip := textOf(t, ctx, "#my-ip"); ip != "127.0.0.1" {
		t.Errorf("My IP shows %q, want 127.0.0.1", ip)
	}
	opts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#duration option')).map(o => o.value)`)
	if opts[len(opts)-1] != "PT3H" || eval[string](t, ctx, `document.querySelector('#duration').value`) != "PT1H" {
		t.Errorf("time options %s (default %s), want up to PT3H, default PT1H (the shortest maximum)", fmtList(opts), eval[string](t, ctx, `document.querySelector('#duration').value`))
	}
	run(t, ctx, "fill the request",
		click(`#request-form input[value="8443/TCP"]`),
		setValue("#duration", "PT30M"),
		keys("#justification", "rotate the database certificates"))
	shot.take(ctx, "request-access")
	run(t, ctx, "submit the request", click("#request-submit"), visible("#opened"))
	mustContain(t, "opened notice", textOf(t, ctx, "#opened"), "Port 22", "127.0.0.1/32", "until")
	grants, err := api.ListGrants(bg, f.db.ID, jit.GrantActive, "")
	if err != nil || len(grants) != 1 {
		t.Fatalf("active grants on db-1: %v %v", grants, err)
	}
	g := grants[0]
	if g.Port != 22 || g.Source != "127.0.0.1/32" || g.User != "admin" || g.EndTime.Sub(g.StartTime) != 30*time.Minute {
		t.Errorf("grant %+v, want port 22 from 127.0.0.1/32 by admin for 30 minutes", g)
	}
	mustContain(t, "opened notice", textOf(t, ctx, "#opened"), g.EndTime.UTC().Format("15:04:05"))

	// The grant is listed with a countdown that ticks.
	sel := `tr[data-grant="` + g.ID + `"] .countdown`
	first := textOf(t, ctx, sel)
	if !strings.HasPrefix(first, "29m") && !strings.HasPrefix(first, "30m") {
		t.Errorf("countdown starts at %q, want about 30 minutes", first)
	}
	time.Sleep(1500 * time.Millisecond)
	if next := textOf(t, ctx, sel); next == first {
		t.Errorf("countdown did not move in 1.5s: %q", next)
	}
	shot.take(ctx, "machine-access")

	// A refused request shows the server's message.
	run(t, ctx, "request a bad range",
		click("#request-open"), visible("#request-dialog[open]"),
		click("#source-range"),
		keys("#range", "300.1.2.3"),
		click("#request-submit"),
		visible("#request-error"))
	mustContain(t, "refusal", textOf(t, ctx, "#request-error"), `"300.1.2.3" is not an IP address or CIDR prefix`)
	shot.take(ctx, "request-refused")

	// Revoke.
	run(t, ctx, "revoke",
		chromedp.Navigate(base+"/machines/"+f.db.ID), visible(`tr[data-grant="`+g.ID+`"] [data-revoke]`),
		click(`tr[data-grant="`+g.ID+`"] [data-revoke]`),
		visible(".banner.ok"))
	mustContain(t, "notice", textOf(t, ctx, ".banner.ok"), "Access revoked")
	if n := eval[int](t, ctx, `document.querySelectorAll('#grants tr[data-grant]').length`); n != 0 {
		t.Errorf("%d grants still listed after revoking", n)
	}
	if gs, err := api.ListGrants(bg, f.db.ID, jit.GrantRevoked, ""); err != nil || len(gs) != 1 || gs[0].EndedBy != "admin" {
		t.Errorf("revoked grants: %+v %v", gs, err)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#usage-chart rect.bar:not(.zero)').length`); n != 1 {
		t.Errorf("usage chart has %d days with requests, want 1", n)
	}
	mustContain(t, "last users", textOf(t, ctx, "#last-users"), "admin")
	eval[bool](t, ctx, `(document.getElementById('usage-title').scrollIntoView({block: 'start'}), true)`)
	shot.take(ctx, "machine-usage")

	// Activity log: filters, paging, verification and the CSV download.
	run(t, ctx, "activity", chromedp.Navigate(base+"/activity"), visible("#events"))
	shot.take(ctx, "activity")
	for i := range 60 {
		if _, err := api.CreateGroup(bg, "g"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	run(t, ctx, "activity", chromedp.Navigate(base+"/activity"), visible("#events"))
	seqs := func() []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#events tbody tr[data-op] td:first-child')).map(td => td.textContent)`)
	}
	page1 := seqs()
	if len(page1) != 50 {
		t.Errorf("first page has %d events, want 50", len(page1))
	}
	run(t, ctx, "older", click("#page-older"), visible("#page-newer"))
	page2 := seqs()
	if len(page2) == 0 || atoi(page2[0]) != atoi(page1[len(page1)-1])-1 {
		t.Errorf("older page starts at %v, want just before %s", page2[:min(1, len(page2))], page1[len(page1)-1])
	}
	run(t, ctx, "newer", click("#page-newer"), visible("#page-older"))
	if got := seqs(); !slices.Equal(got, page1) {
		t.Errorf("Newer from page 2 shows %s..., want the first page again", fmtList(got[:min(3, len(got))]))
	}

	since := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
	run(t, ctx, "filter the log",
		chromedp.Navigate(base+"/activity"), visible("#f-vm"),
		setValue("#f-vm", f.db.ID),
		setValue("#f-operation", jit.OpGrantRevoke),
		keys("#f-actor", "admin"),
		setValue("#f-since", since),
		click("#filter-apply"),
		ready(`#f-operation option[value="grant.revoke"][selected]`))
	ops := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#events tbody tr[data-op]')).map(r => r.dataset.op)`)
	if !slices.Equal(ops, []string{jit.OpGrantRevoke}) {
		t.Errorf("filtered log shows %s, want one grant.revoke", fmtList(ops))
	}
	run(t, ctx, "verify", click("#verify"), visible("#verify-result"))
	mustContain(t, "verify result", textOf(t, ctx, "#verify-result"), "intact")
	if ops := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#events tbody tr[data-op]')).map(r => r.dataset.op)`); !slices.Equal(ops, []string{jit.OpGrantRevoke}) {
		t.Errorf("verifying lost the filter: %s", fmtList(ops))
	}
	shot.take(ctx, "activity-filtered")

	rows, err := csv.NewReader(strings.NewReader(string(download(t, ctx, "#csv")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || !slices.Equal(rows[0], httpio.CSVHeader) {
		t.Fatalf("CSV has %d rows: %q", len(rows), rows)
	}
	col := func(name string) string { return rows[1][slices.Index(httpio.CSVHeader, name)] }
	if col("operation") != jit.OpGrantRevoke || col("vmId") != f.db.ID || col("actor") != "admin" || !strings.Contains(col("details"), g.ID) {
		t.Errorf("CSV row %q, want the revocation of grant %s on db-1", rows[1], g.ID)
	}
	run(t, ctx, "until yesterday",
		chromedp.Clear(chromedp.CSS("#f-since")),
		setValue("#f-until", time.Now().UTC().Add(-24*time.Hour).Format("2006-01-02T15:04")),
		click("#filter-apply"),
		visible("#events .empty"))

	// Sign out: the session's token is gone, so the old cookie is useless.
	old := ck.Value
	run(t, ctx, "sign out", click(".who button"), visible("#user"))
	stale := newHTTPUser(t, base)
	stale.setCookie(old)
	if st, loc, _ := stale.get("/machines"); st != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin") {
		t.Errorf("old session after sign-out: %d %q, want a redirect to /signin", st, loc)
	}

	// A requester: request and revoke their own access; no policy editor,
	// and no Revoke on someone else's grant.
	other, err := api.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "192.0.2.7"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	signInBrowser(t, ctx, base, "rachel", requesterPassword)
	run(t, ctx, "web-1 as requester", chromedp.Navigate(base+"/machines/"+f.web.ID), visible("#policy-view"))
	if eval[bool](t, ctx, `!!document.querySelector('#policy-form, #policy-save, #policy-disable, [data-add-row]')`) {
		t.Error("a requester sees the policy editor")
	}
	if eval[bool](t, ctx, `!!document.querySelector('tr[data-grant="`+other.Grants[0].ID+`"] [data-revoke]')`) {
		t.Error("a requester may revoke someone else's grant")
	}
	run(t, ctx, "request as requester",
		click("#request-open"), visible("#request-dialog[open]"))
	if eval[bool](t, ctx, `!!document.querySelector('#source-range')`) {
		t.Error("a requester without requester-any-source is offered another source")
	}
	run(t, ctx, "submit", click("#request-submit"), visible("#opened"))
	if n := eval[int](t, ctx, `document.querySelectorAll('#grants [data-revoke]').length`); n != 1 {
		t.Errorf("requester sees %d Revoke buttons, want 1 (their own)", n)
	}
	shot.take(ctx, "machine-requester")
	run(t, ctx, "revoke own", click("#grants [data-revoke]"), visible(".banner.ok"))
	// The success banner of the request may still be showing: wait (a
	// bounded while) for the revocation itself.
	var gs []jit.Grant
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		gs, _ = api.ListGrants(bg, f.web.ID, jit.GrantActive, "")
		if (len(gs) == 1 && gs[0].ID == other.Grants[0].ID) || time.Now().After(deadline) {
			break
		}
	}
	if len(gs) != 1 || gs[0].ID != other.Grants[0].ID {
		t.Errorf("after the requester revoked their own grant, active grants are %+v", gs)
	}

	// The server refuses what the requester's page does not offer.
	rachel := newHTTPUser(t, base)
	rachel.setCookie(sessionCookie(t, ctx, base).Value)
	before, _ := api.GetPolicy(bg, f.web.ID)
	st, _, body := rachel.post("/machines/"+f.web.ID+"/policy", url.Values{"action": {"save"}, "port": {"22", "3389"}, "protocol": {"TCP", "TCP"}, "sources": {"*", "*"}, "max": {"PT3H", "PT3H"}})
	if st != http.StatusForbidden || !strings.Contains(body, "may not change JIT policies") {
		t.Errorf("requester posting the policy form: %d\n%s", st, body)
	}
	if st, _, _ := rachel.post("/machines/"+f.web.ID+"/disable", nil); st != http.StatusForbidden {
		t.Errorf("requester disabling JIT: %d, want 403", st)
	}
	if st, _, _ := rachel.post("/grants/"+other.Grants[0].ID+"/revoke", nil); st != http.StatusForbidden {
		t.Errorf("requester revoking another user's grant: %d, want 403", st)
	}
	if after, _ := api.GetPolicy(bg, f.web.ID); !after.UpdatedAt.Equal(before.UpdatedAt) || len(after.Ports) != 1 {
		t.Errorf("policy changed by a requester: %+v", after)
	}
	if st, _, _ := rachel.get("/machines/" + f.lb.ID); st != http.StatusNotFound {
		t.Errorf("requester in prod reading a dev machine: %d, want 404", st)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// TestReadOnly checks that a reader sees pages but no buttons, and that
// the server refuses a reader's forms.
func TestReadOnly(t *testing.T) {
	f := newFixture(t)
	bg := context.Background()
	if _, err := f.s.Admin.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22}}}}}); err != nil {
		t.Fatal(err)
	}
	rita := newHTTPUser(t, f.s.URL)
	rita.signIn("rita", readerPassword)
	for _, path := range []string{"/machines/" + f.web.ID, "/machines/" + f.db.ID} {
		st, _, body := rita.get(path)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d", path, st)
		}
		for _, forbidden := range []string{`id="policy-form"`, `id="request-open"`, `data-revoke`, `id="policy-disable"`} {
			if strings.Contains(body, forbidden) {
				t.Errorf("reader sees %s on %s", forbidden, path)
			}
		}
	}
	if st, _, body := rita.get("/machines/" + f.web.ID); !strings.Contains(body, `id="policy-view"`) || !strings.Contains(body, "data-grant=") {
		t.Errorf("reader does not see the policy or the grants (%d)", st)
	}
	if st, _, _ := rita.get("/activity"); st != http.StatusOK {
		t.Errorf("reader reading the activity log: %d", st)
	}
	if st, _, _ := rita.post("/machines/"+f.web.ID+"/request", url.Values{"port": {"22/TCP"}, "source": {"my-ip"}, "duration": {"PT1H"}}); st != http.StatusForbidden {
		t.Errorf("reader requesting access: %d, want 403", st)
	}
	if st, _, _ := rita.post("/machines/"+f.db.ID+"/policy", url.Values{"action": {"save"}, "port": {"22"}, "protocol": {"*"}, "sources": {"*"}, "max": {"PT3H"}}); st != http.StatusForbidden {
		t.Errorf("reader saving a policy: %d, want 403", st)
	}
}

// TestFormsWithoutJavaScript walks the policy editor's Add and Remove and
// a request through plain form posts, as a browser without JavaScript.
func TestFormsWithoutJavaScript(t *testing.T) {
	f := newFixture(t)
	u := newHTTPUser(t, f.s.URL)
	u.signIn("admin", adminPassword)
	path := "/machines/" + f.db.ID + "/policy"
	// Every post ends in a redirect (post/redirect/get): the page it leads
	// to shows the editor as typed, and reloading it sends nothing.
	follow := func(form url.Values) (int, string) {
		t.Helper()
		st, loc, body := u.post(path, form)
		if st != http.StatusSeeOther || !strings.HasPrefix(loc, "/machines/"+f.db.ID+"?draft=") {
			t.Fatalf("post %v: %d %q, want a redirect to the editor\n%s", form, st, loc, body)
		}
		st, _, body = u.get(strings.TrimSuffix(loc, "#policy"))
		return st, body
	}
	form := url.Values{"port": {"22"}, "protocol": {"*"}, "sources": {"*"}, "max": {"PT3H"}, "action": {"add"}}
	st, body := follow(form)
	if st != http.StatusOK || strings.Count(body, `name="port"`) != 3 { // two rows and the template's
		t.Fatalf("Add without JavaScript: %d, %d port fields", st, strings.Count(body, `name="port"`))
	}
	form = url.Values{"port": {"22", "2222"}, "protocol": {"*", "TCP"}, "sources": {"*", "10.0.0.0/8"}, "max": {"PT3H", "PT2H"}, "action": {"remove:0"}}
	st, body = follow(form)
	if st != http.StatusOK || strings.Count(body, `name="port"`) != 2 || !strings.Contains(body, `value="2222"`) || strings.Contains(body, `id="port-0" name="port" value="22"`) {
		t.Fatalf("Remove without JavaScript: %d\n%s", st, body)
	}
	form.Set("action", "save")
	form["port"] = []string{"2222", "x"}
	form["protocol"], form["sources"], form["max"] = []string{"TCP", "TCP"}, []string{"10.0.0.0/8", "not-an-ip"}, []string{"PT2H", "PT2H"}
	// Every field at fault is named next to it, not only the first.
	if st, body = follow(form); st != http.StatusOK || !strings.Contains(body, "Row 2, port: &#34;x&#34; is not a port number") || !strings.Contains(body, "Row 2, allowed sources:") || !strings.Contains(body, `id="sources-1-err"`) {
		t.Errorf("bad port and source: %d\n%s", st, body)
	}
	form["port"], form["sources"] = []string{"2222"}, []string{"10.0.0.0/8, not-an-ip"}
	form["protocol"], form["max"] = []string{"TCP"}, []string{"PT2H"}
	if st, body = follow(form); st != http.StatusOK || !strings.Contains(body, "is not an IP address or CIDR prefix") {
		t.Errorf("bad source: %d\n%s", st, body)
	}
	// Enter in a field checks the form and saves nothing.
	form["sources"] = []string{"10.0.0.0/8, 127.0.0.0/8"}
	form.Set("action", "check")
	if st, body = follow(form); st != http.StatusOK || !strings.Contains(body, `id="policy-checked"`) {
		t.Errorf("check: %d\n%s", st, body)
	}
	if _, err := f.s.Admin.GetPolicy(context.Background(), f.db.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("a check enabled JIT: %v", err)
	}
	form.Set("action", "save")
	form["sources"] = []string{"10.0.0.0/8, 127.0.0.0/8"}
	st, loc, body := u.post(path, form)
	if st != http.StatusSeeOther || loc != "/machines/"+f.db.ID+"?done=saved#policy" {
		t.Fatalf("save: %d %q\n%s", st, loc, body)
	}
	st, loc, body = u.post("/machines/"+f.db.ID+"/request", url.Values{"port": {"2222/TCP"}, "source": {"my-ip"}, "duration": {"PT5M"}})
	if st != http.StatusSeeOther || !strings.Contains(loc, "?opened=") {
		t.Fatalf("request: %d %q\n%s", st, loc, body)
	}
	if _, _, body := u.get(loc); !strings.Contains(body, "Port 2222 (TCP) is open for 127.0.0.1/32") {
		t.Errorf("machine page after the request does not say what opened:\n%s", body)
	}
	// Text no store keeps is refused before it reaches one, and opens nothing.
	for _, bad := range []url.Values{
		{"port": {"2222/TCP"}, "source": {"my-ip"}, "duration": {"PT5M"}, "justification": {"fix\x00it"}},
		{"port": {"2222/TCP"}, "source": {"my-ip"}, "duration": {"PT5M"}, "justification": {"\xff"}},
	} {
		if st, _, body := u.post("/machines/"+f.db.ID+"/request", bad); st != http.StatusBadRequest || !strings.Contains(body, "UTF-8 text without NUL") {
			t.Errorf("request with justification %q: %d\n%s", bad.Get("justification"), st, body)
		}
	}
	if st, _, _ := u.get("/machines/%FF"); st != http.StatusBadRequest {
		t.Errorf("machine page of an invalid id: %d, want 400", st)
	}
	if gs, err := f.s.Admin.ListGrants(context.Background(), f.db.ID, jit.GrantActive, ""); err != nil || len(gs) != 1 {
		t.Errorf("active grants after refused requests: %d %v, want the one opened before", len(gs), err)
	}
	if st, _, body := u.get("/machines/" + f.db.ID + "/disable"); st != http.StatusOK || !strings.Contains(body, `id="disable-confirm"`) {
		t.Errorf("disable page: %d", st)
	}
	if st, loc, _ := u.post("/machines/"+f.db.ID+"/disable", nil); st != http.StatusSeeOther || !strings.HasSuffix(loc, "done=disabled") {
		t.Errorf("disable: %d %q", st, loc)
	}
	if _, err := f.s.Admin.GetPolicy(context.Background(), f.db.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("policy after disabling: %v", err)
	}
}

// TestCrossOrigin checks that state-changing forms sent from another site
// are refused, while the same forms from the console's own pages pass.
func TestCrossOrigin(t *testing.T) {
	f := newFixture(t)
	u := newHTTPUser(t, f.s.URL)
	u.signIn("admin", adminPassword)
	save := url.Values{"action": {"save"}, "port": {"3389"}, "protocol": {"TCP"}, "sources": {"*"}, "max": {"PT1H"}}
	path := "/machines/" + f.web.ID + "/policy"
	for _, h := range [][]string{
		{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other." + strings.TrimPrefix(f.s.URL, "http://")},
	} {
		st, _, body := u.post(path, save, h...)
		if st != http.StatusForbidden || !strings.Contains(body, "another site") {
			t.Errorf("policy form with %q: %d, want 403\n%s", h, st, body)
		}
	}
	if st, _, _ := u.post("/signin", url.Values{"user": {"admin"}, "password": {adminPassword}}, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"); st != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d, want 403", st)
	}
	if st, _, _ := u.post("/signout", nil, "Sec-Fetch-Site", "cross-site"); st != http.StatusForbidden {
		t.Errorf("cross-site sign-out: %d, want 403", st)
	}
	pol, err := f.s.Admin.GetPolicy(context.Background(), f.web.ID)
	if err != nil || len(pol.Ports) != 1 || pol.Ports[0].Number != 22 {
		t.Fatalf("policy changed by cross-origin posts: %+v %v", pol, err)
	}
	if st, _, body := u.post(path, save, "Origin", f.s.URL, "Sec-Fetch-Site", "same-origin"); st != http.StatusSeeOther {
		t.Errorf("same-origin save: %d\n%s", st, body)
	}
}

// TestSignInLimits checks the failed sign-in limits per user and per
// address, and what the activity log records of sign-ins.
func TestSignInLimits(t *testing.T) {
	f := newFixture(t)
	u := newHTTPUser(t, f.s.URL)
	try := func(user, password string) (int, string) {
		t.Helper()
		st, _, body := u.post("/signin", url.Values{"user": {user}, "password": {password}})
		return st, body
	}
	for i := range 5 {
		if st, body := try("admin", "wrong-password-"+strconv.Itoa(i)); st != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
			t.Fatalf("failure %d: %d\n%s", i+1, st, body)
		}
	}
	st, body := try("admin", adminPassword)
	if st != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("after 5 failures the right password: %d, want 429\n%s", st, body)
	}
	// Other users from the same address are not locked out by admin's
	// failures...
	if st, _ := try("rachel", requesterPassword); st != http.StatusSeeOther {
		t.Fatalf("another user after admin's failures: %d, want 303", st)
	}
	// ...not even once the address has many failures: rita, who did not
	// fail, gets in (a guesser behind her address cannot keep her out).
	for i := range control.SourceFree - 5 {
		if st, _ := try("nobody"+strconv.Itoa(i%4), "wrong-password"); st != http.StatusUnauthorized {
			t.Fatalf("address failure %d: %d, want 401", i+6, st)
		}
	}
	if st, _ := try("rita", readerPassword); st != http.StatusSeeOther {
		t.Fatalf("rita after %d failures from her address: %d, want 303", control.SourceFree, st)
	}

	events, err := f.s.Admin.ListEvents(context.Background(), client.EventQuery{Operation: jit.OpSignIn})
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, e := range events {
		for _, pw := range []string{adminPassword, requesterPassword, "wrong-password"} {
			if strings.Contains(string(e.Details), pw) {
				t.Errorf("sign-in event %d contains a password: %s", e.Seq, e.Details)
			}
		}
		if e.ActorAddress != "127.0.0.1" {
			t.Errorf("sign-in event %d from %q, want 127.0.0.1", e.Seq, e.ActorAddress)
		}
		switch e.Outcome {
		case jit.OutcomeSuccess:
			ok++
			if e.Actor != "rachel" && e.Actor != "rita" {
				t.Errorf("successful sign-in by %q, want rachel or rita", e.Actor)
			}
		case jit.OutcomeFailure:
			failed++
		}
	}
	// Refusals by the limit never reach the password check, so they are
	// not sign-in attempts in the log.
	if ok != 2 || failed != control.SourceFree {
		t.Errorf("log has %d successful and %d failed sign-ins, want 2 and %d", ok, failed, control.SourceFree)
	}
}

// TestSecureCookie checks the session cookie's attributes over TLS.
func TestSecureCookie(t *testing.T) {
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--tls", "auto"}})
	if _, err := s.Admin.SetPassword(context.Background(), "admin", "", adminPassword); err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // a test server's self-signed certificate
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(s.URL+"/signin", url.Values{"user": {"admin"}, "password": {adminPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("sign-in over TLS: %s, cookies %v", resp.Status, resp.Cookies())
	}
	if !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Errorf("session cookie over TLS: %s; want Secure, HttpOnly, SameSite=Lax, Path=/", session)
	}
}
