package console_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestMultiSelect enables JIT with the recommendation on two machines at
// once, then requests access to two machines in one request.
func TestMultiSelect(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	signInBrowser(t, ctx, base, "admin", adminPassword)

	run(t, ctx, "not configured", chromedp.Navigate(base+"/machines?tab=not-configured"), visible("#bulk-enable"),
		click("#sel-"+f.db.ID), click("#sel-"+f.app.ID), click("#bulk-enable"), visible("#notice"))
	mustContain(t, "result", textOf(t, ctx, "#notice"), "2 machines", "db-1", "app-1")
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "notice" {
		t.Errorf("after enabling, focus is on %q, want the result", id)
	}
	for _, vm := range []jit.VM{f.db, f.app} {
		pol, err := api.GetPolicy(bg, vm.ID)
		if err != nil || len(pol.Ports) != 1 || pol.Ports[0].Number != 22 {
			t.Errorf("policy of %s after enabling it with the recommendation: %+v %v", vm.Name, pol.Ports, err)
		}
	}

	run(t, ctx, "configured", chromedp.Navigate(base+"/machines?tab=configured"), visible("#bulk-request"),
		click("#sel-"+f.web.ID), click("#sel-"+f.db.ID), click("#bulk-request"), visible("#request-form"))
	if n := eval[int](t, ctx, `document.querySelectorAll('#request-form fieldset legend').length`); n != 3 {
		t.Errorf("the request form has %d fieldsets, want one per machine and the source", n)
	}
	run(t, ctx, "request both", keys("#justification", "patch both"), click("#request-submit"), visible("#notice"))
	mustContain(t, "result", textOf(t, ctx, "#notice"), "Access granted", "web-1", "db-1")
	reqs, err := api.ListRequests(bg, "admin")
	if err != nil || len(reqs) == 0 {
		t.Fatal(reqs, err)
	}
	var last jit.Request
	for _, r := range reqs {
		if r.Justification == "patch both" {
			last = r
		}
	}
	got, err := api.GetRequest(bg, last.ID)
	if err != nil || len(got.Grants) != 2 || got.Grants[0].VMID == got.Grants[1].VMID {
		t.Errorf("one request for both machines: %+v %v", got.Grants, err)
	}
}
