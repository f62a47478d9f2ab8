package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestRequestDialogTraps drives the Request access dialog through what
// used to trip people: defaults the server refuses, a typed range that
// was not used, a form sent twice, an error page at the POST address, a
// session ending mid-request and a revoke of an ended grant.
func TestRequestDialogTraps(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	// web-1: 22 from anywhere for up to 3 hours, 3389 only from
	// 198.51.100.0/24 (not from the browser's 127.0.0.1) for up to 1 hour.
	if _, err := api.PutPolicy(bg, f.web.ID, jit.Policy{Ports: []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
		{Number: 3389, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"198.51.100.0/24"}, MaxRequestAccessDuration: "PT1H"},
	}}); err != nil {
		t.Fatal(err)
	}
	signInBrowser(t, ctx, base, "admin", adminPassword)
	page := base + "/machines/" + f.web.ID
	activeGrants := func() []jit.Grant {
		t.Helper()
		gs, err := api.ListGrants(bg, f.web.ID, jit.GrantActive, "")
		if err != nil {
			t.Fatal(err)
		}
		return gs
	}
	enabledTimes := func() []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#duration option:not([disabled])')).map(o => o.value)`)
	}

	// 1. The defaults are a request the server grants: the port this
	// address may not use is unticked and says why; the times fit the
	// ticked ports.
	run(t, ctx, "open the dialog", chromedp.Navigate(page), click("#request-open"), visible("#request-dialog[open]"))
	if eval[bool](t, ctx, `document.querySelector('#request-form input[value="3389/TCP"]').checked`) {
		t.Error("port 3389, closed to 127.0.0.1 by the policy, is ticked by default")
	}
	mustContain(t, "why 3389 is not ticked", textOf(t, ctx, "#req-port-1-why"), "not from your address 127.0.0.1", "198.51.100.0/24")
	if got, sel := enabledTimes(), eval[string](t, ctx, `document.querySelector('#duration').value`); got[len(got)-1] != "PT3H" || sel != "PT3H" {
		t.Errorf("with port 22 ticked the times go up to %s (default %s), want PT3H", got[len(got)-1], sel)
	}
	run(t, ctx, "tick 3389", click(`#request-form input[value="3389/TCP"]`))
	if got, sel := enabledTimes(), eval[string](t, ctx, `document.querySelector('#duration').value`); got[len(got)-1] != "PT1H" || sel != "PT1H" {
		t.Errorf("with 3389 ticked too, the times go up to %s (selected %s), want PT1H", got[len(got)-1], sel)
	}
	run(t, ctx, "untick 3389", click(`#request-form input[value="3389/TCP"]`))

	// 2. Typing a range chooses it.
	run(t, ctx, "type a range", keys("#range", "203.0.113.0/24"))
	if !eval[bool](t, ctx, `document.querySelector('#source-range').checked`) {
		t.Error("typing a range left My IP chosen")
	}
	run(t, ctx, "back to my IP", chromedp.Clear(chromedp.CSS("#range")), click("#source-my-ip"))

	// 3. Submitting disables the button and shows progress; a second
	// click sends nothing.
	eval[bool](t, ctx, `(window.__sent = 0, document.querySelector('#request-form').addEventListener('submit', e => { window.__sent++; e.preventDefault(); }), true)`)
	run(t, ctx, "click", click("#request-submit"), chromedp.Sleep(100*time.Millisecond))
	eval[bool](t, ctx, `(document.querySelector('#request-submit').click(), true)`)
	if !eval[bool](t, ctx, `document.querySelector('#request-submit').disabled`) || textOf(t, ctx, "#request-submit") != "Opening…" {
		t.Errorf("after submitting, the button is enabled=%v with text %q, want disabled, Opening…", !eval[bool](t, ctx, `document.querySelector('#request-submit').disabled`), textOf(t, ctx, "#request-submit"))
	}
	if n := eval[int](t, ctx, `window.__sent`); n != 1 {
		t.Errorf("two clicks sent the form %d times, want 1", n)
	}

	// The defaults are granted.
	run(t, ctx, "submit the defaults", chromedp.Navigate(page), click("#request-open"), visible("#request-dialog[open]"),
		keys("#justification", "check the logs"), click("#request-submit"), visible("#opened"))
	if gs := activeGrants(); len(gs) != 1 || gs[0].Port != 22 || gs[0].EndTime.Sub(gs[0].StartTime) != 3*time.Hour {
		t.Fatalf("the default request opened %+v, want port 22 for 3 hours", gs)
	}
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "opened" {
		t.Errorf("after the request, focus is on %q, want the result banner", id)
	}
	// Back shows the machine page with the dialog closed and empty.
	eval[bool](t, ctx, `(history.back(), true)`)
	// (Evaluated, not waited for: chromedp loses track of a page that
	// Back restores from the browser's cache.)
	time.Sleep(time.Second)
	state := eval[string](t, ctx, `location.search + '|' + !!document.querySelector('#request-dialog[open]') + '|' + document.querySelector('#justification').value`)
	if state != "|false|" {
		t.Errorf("Back after a grant: query|dialog open|justification = %q, want the machine page, closed and empty", state)
	}

	// The same form sent twice (a retry of a slow answer) makes one
	// request.
	u := newHTTPUser(t, base)
	u.setCookie(sessionCookie(t, ctx, base).Value)
	_, _, body := u.get("/machines/" + f.db.ID)
	if _, err := api.PutPolicy(bg, f.db.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP"}}}); err != nil {
		t.Fatal(err)
	}
	_, _, body = u.get("/machines/" + f.db.ID + "/request")
	key := regexp.MustCompile(`name="key" value="([0-9a-f]+)"`).FindStringSubmatch(body)
	if key == nil {
		t.Fatalf("the request form has no key:\n%s", body)
	}
	form := url.Values{"key": {key[1]}, "port": {"22/TCP"}, "source": {"my-ip"}, "duration": {"PT1H"}}
	_, loc1, _ := u.post("/machines/"+f.db.ID+"/request", form)
	_, loc2, _ := u.post("/machines/"+f.db.ID+"/request", form)
	if gs, _ := api.ListGrants(bg, f.db.ID, jit.GrantActive, ""); len(gs) != 1 || loc1 != loc2 {
		t.Errorf("one form sent twice opened %d grants (went to %q and %q), want 1 and the same page", len(gs), loc1, loc2)
	}

	// 6. A refusal is shown at a page of its own (post/redirect/get):
	// reloading it sends nothing.
	run(t, ctx, "refused", chromedp.Navigate(page), click("#request-open"), visible("#request-dialog[open]"),
		click("#source-range"), keys("#range", "300.1.2.3"), click("#request-submit"), visible("#request-error"))
	loc := get(t, ctx, "location", chromedp.Location())
	if !strings.Contains(loc, "/request?draft=") {
		t.Errorf("the refusal is shown at %s, want a page of its own", loc)
	}
	if v := eval[string](t, ctx, `document.querySelector('#range').value`); v != "300.1.2.3" {
		t.Errorf("the refused form shows range %q, want what was typed", v)
	}
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "request-error" {
		t.Errorf("after a refusal, focus is on %q, want the error", id)
	}
	before := len(activeGrants())
	run(t, ctx, "reload", chromedp.Navigate(loc+"&again=1"), visible("#request-error"))
	if n := len(activeGrants()); n != before {
		t.Errorf("reloading the refusal changed the grants: %d, then %d", before, n)
	}

	// 5. The session ends while the form is open: signing in again
	// returns to the form as it was, and sending it works.
	run(t, ctx, "open the dialog", chromedp.Navigate(page), click("#request-open"), visible("#request-dialog[open]"),
		keys("#justification", "INC-4711 disk full"), setValue("#duration", "PT30M"))
	if st, _, _ := u.post("/signout", nil); st != http.StatusSeeOther {
		t.Fatalf("sign out the browser's session: %d", st)
	}
	run(t, ctx, "send after the session ended", click("#request-submit"), visible("#signin-ended"),
		keys("#user", "admin"), keys("#password", adminPassword), click("#signin-submit"), visible("#request-form"))
	if v := eval[string](t, ctx, `document.querySelector('#justification').value`); v != "INC-4711 disk full" {
		t.Errorf("after signing in again the justification is %q, want what was typed", v)
	}
	if v := eval[string](t, ctx, `document.querySelector('#duration').value`); v != "PT30M" {
		t.Errorf("after signing in again the time is %q, want PT30M", v)
	}
	run(t, ctx, "send", click("#request-submit"), visible("#opened"))

	// 4. Revoking a grant that has already ended reports its state.
	g := activeGrants()[0]
	run(t, ctx, "machine page", chromedp.Navigate(page), visible(`tr[data-grant="`+g.ID+`"] [data-revoke]`))
	if _, err := api.Revoke(bg, g.ID); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "revoke the ended grant", click(`tr[data-grant="`+g.ID+`"] [data-revoke]`), visible(".banner.ok"))
	mustContain(t, "second revoke", textOf(t, ctx, ".banner.ok"), "revoked by admin")
	mustContain(t, "recently ended", textOf(t, ctx, "#recent"), "revoked by admin")
}

// TestPolicyEditorTraps checks that Enter in a policy field never
// enables JIT, that every field's error is shown next to it, and that a
// machine's state says what it means and what to do.
func TestPolicyEditorTraps(t *testing.T) {
	ctx := newBrowser(t)
	shot := newShots(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	signInBrowser(t, ctx, base, "admin", adminPassword)

	// 7. Enter checks the form; it does not save.
	run(t, ctx, "db-1", chromedp.Navigate(base+"/machines/"+f.db.ID), visible("#policy-save"),
		focus("#port-0"), chromedp.KeyEvent(kb.Enter), visible("#policy-checked"))
	if _, err := api.GetPolicy(bg, f.db.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("Enter in the port field enabled JIT (%v)", err)
	}
	run(t, ctx, "two bad fields",
		click("#policy-add"),
		keys("#policy-rows tr:nth-child(2) input[name=port]", "99999"),
		keys("#policy-rows tr:nth-child(2) input[name=sources]", "not-an-address"),
		click("#policy-save"), visible("#policy-error"))
	shot.take(ctx, "policy-errors")
	errs := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('.field-error')).map(e => e.id)`)
	if len(errs) != 2 || !strings.HasPrefix(errs[0], "port-") || !strings.HasPrefix(errs[1], "sources-") {
		t.Errorf("field errors %v, want one at the port and one at the sources", errs)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#policy-error a[href^="#"]').length`); n != 2 {
		t.Errorf("the error summary links %d fields, want 2", n)
	}
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "policy-error" {
		t.Errorf("after a failed save, focus is on %q, want the error summary", id)
	}
	if _, err := api.GetPolicy(bg, f.db.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("a refused save enabled JIT (%v)", err)
	}

	// 8. An unsupported machine offers no "Save and enable JIT" and says
	// what to do.
	run(t, ctx, "nonft-1", chromedp.Navigate(base+"/machines/"+f.nonft.ID), visible("#vm-remedy"))
	if eval[bool](t, ctx, `!!document.querySelector('#policy-save')`) {
		t.Error("an unsupported machine offers Save and enable JIT")
	}
	mustContain(t, "remedy", textOf(t, ctx, "#vm-remedy"), "nftables")
	// With JIT enabled but not enforced, nothing says "JIT enabled" in green.
	if _, err := api.PutPolicy(bg, f.nonft.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP"}}}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "nonft-1 with JIT", chromedp.Navigate(base+"/machines/"+f.nonft.ID), visible("#vm-state"))
	if eval[bool](t, ctx, `!!document.querySelector('.badge.ok')`) {
		t.Errorf("a machine whose rules are not enforced shows a green badge: %q", textOf(t, ctx, "#vm-status"))
	}
	mustContain(t, "state", textOf(t, ctx, "#vm-state"), "not", "What to do")
	run(t, ctx, "old-1", chromedp.Navigate(base+"/machines/"+f.old.ID), visible("#vm-remedy"))
	mustContain(t, "remedy", textOf(t, ctx, "#vm-remedy"), "enroll")
}

// TestEndedGrants checks that a grant leaves Active access when its time
// is up, without a reload, and that ended grants are listed.
func TestEndedGrants(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	signInBrowser(t, ctx, base, "admin", adminPassword)
	// Long enough for the page to load on a busy machine.
	req, err := api.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT6S"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := req.Grants[0]
	row := `tr[data-grant="` + g.ID + `"]`
	run(t, ctx, "machine page", chromedp.Navigate(base+"/machines/"+f.web.ID), visible(row+" [data-revoke]"))
	run(t, ctx, "wait for the end", chromedp.WaitVisible(chromedp.CSS(row+".ended")))
	if eval[bool](t, ctx, `!!document.querySelector('`+row+` [data-revoke]')`) {
		t.Error("an ended grant still offers Revoke")
	}
	mustContain(t, "ended row", textOf(t, ctx, row), "Ended")
	// (Another address than the page's own: chromedp may wait on the old
	// document when navigating to the same one.)
	run(t, ctx, "reload", chromedp.Navigate(base+"/machines/"+f.web.ID+"?again=1"), visible("#recent"))
	mustContain(t, "recently ended", textOf(t, ctx, "#recent"), "expired")
	if eval[bool](t, ctx, `!!document.querySelector('`+row+`')`) {
		t.Error("the ended grant is still under Active access after a reload")
	}
}

// TestActivitySentencesAndTimes checks that the activity log reads as
// sentences naming people and machines (agents as their machine's), with
// the JSON one click away, and that times show in the viewer's time zone
// with UTC on hover.
func TestActivitySentencesAndTimes(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	if _, err := api.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "192.0.2.7"}}}}, Justification: "INC-4711"}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"}); err != nil {
		t.Fatal(err)
	}
	signInBrowser(t, ctx, base, "admin", adminPassword)
	run(t, ctx, "activity", chromedp.Navigate(base+"/activity?operation=grant.open"), visible("#events"))
	mustContain(t, "grant.open", textOf(t, ctx, `#events tr[data-op="grant.open"] td.sentence`), "admin opened port 22/TCP on web-1 for 192.0.2.7/32 until")
	run(t, ctx, "approvals", chromedp.Navigate(base+"/activity?operation=request.approve"), visible("#events"))
	mustContain(t, "request.approve", textOf(t, ctx, `#events tr[data-op="request.approve"] td.sentence`), "admin was granted access to web-1: INC-4711.")
	run(t, ctx, "grants", chromedp.Navigate(base+"/activity?operation=grant.open"), visible("#events"))
	if eval[bool](t, ctx, `document.querySelector('#events tr[data-op="grant.open"] details').open`) {
		t.Error("the JSON is open by default")
	}
	run(t, ctx, "open the JSON", click(`#events tr[data-op="grant.open"] summary`))
	mustContain(t, "JSON", textOf(t, ctx, `#events tr[data-op="grant.open"] pre`), `"port": 22`)
	run(t, ctx, "agents", chromedp.Navigate(base+"/activity?operation=agent.connect"), visible("#events"))
	mustContain(t, "agent.connect", textOf(t, ctx, `#events tr[data-op="agent.connect"] td.sentence`), "The agent of")
	if got := textOf(t, ctx, `#events tr[data-op="agent.connect"] td.sentence`); strings.Contains(got, "agent:") {
		t.Errorf("an agent is named by its id: %q", got)
	}
	tm := `#events tr[data-op="agent.connect"] time`
	text, title := textOf(t, ctx, tm), eval[string](t, ctx, `document.querySelector('`+tm+`').title`)
	if !strings.Contains(title, "UTC") || strings.Contains(text, "UTC") || !strings.Contains(text, "GMT+9") {
		t.Errorf("time shows %q (hover %q), want Tokyo time with UTC on hover", text, title)
	}
}
