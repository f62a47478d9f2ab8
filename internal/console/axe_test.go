package console_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/jit"
)

// axeSource returns axe-core's script, which scripts/test.sh installs from
// the npm registry and names in AJAR_TEST_AXE.
func axeSource(t *testing.T) string {
	t.Helper()
	path := os.Getenv("AJAR_TEST_AXE")
	if path == "" {
		t.Skip("axe-core is not installed: AJAR_TEST_AXE is unset (scripts/test.sh installs axe-core from npm and sets it; " +
			"or: cd internal/console/testdata/axe && npm ci, then AJAR_TEST_AXE=$PWD/node_modules/axe-core/axe.min.js)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("axe-core is not readable at AJAR_TEST_AXE=%s: %v", path, err)
	}
	return string(b)
}

// axeViolation is what axe-core reports of one rule broken.
type axeViolation struct {
	ID    string `json:"id"`
	Help  string `json:"help"`
	Nodes []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// TestAccessibility runs axe-core in Chromium over every page of the
// console, at desktop (1280 px) and phone (390 px) width, and fails on any
// violation; at phone width no page may be wider than the screen, and
// every control is at least 24 px high and wide.
func TestAccessibility(t *testing.T) {
	axe := axeSource(t)
	ctx := newBrowser(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	if _, err := api.RequestAccess(bg, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: f.web.ID, Ports: []jit.PortRequest{{Number: 22}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	check := func(name, url string) {
		t.Helper()
		for _, width := range []int{1280, 390} {
			run(t, ctx, name, chromedp.EmulateViewport(int64(width), 844), chromedp.Navigate(url), ready("main"))
			res := get(t, ctx, "axe on "+name, chromedp.Evaluate[string](axe+`;
				axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
			var vs []axeViolation
			if err := json.Unmarshal([]byte(res), &vs); err != nil {
				t.Fatalf("axe on %s: %v", name, err)
			}
			for _, v := range vs {
				var where []string
				for _, n := range v.Nodes {
					where = append(where, n.HTML)
				}
				t.Errorf("%s at %d px: %s (%s): %s", name, width, v.ID, v.Help, strings.Join(where, " | "))
			}
			if width < 1000 {
				if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > width {
					t.Errorf("%s at %d px is %d px wide", name, width, w)
				}
				small := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary'))
					.filter(e => { const r = e.getBoundingClientRect(); return r.width > 1 && r.height > 1 && r.right > 0 && getComputedStyle(e).visibility !== 'hidden' &&
						!e.closest('[aria-hidden=true], li, p:not(:has(> a:only-child))') && (r.width < 24 || r.height < 24); })
					.map(e => e.outerHTML.slice(0, 120))`)
				for _, s := range small {
					t.Errorf("%s at %d px: tap target smaller than 24 px: %s", name, width, s)
				}
			}
		}
	}
	check("sign-in", base+"/signin")
	signInBrowser(t, ctx, base, "admin", adminPassword)
	for _, p := range []struct{ name, path string }{
		{"machines, configured", "/machines"},
		{"machines, not configured", "/machines?tab=not-configured"},
		{"machines, unsupported", "/machines?tab=unsupported"},
		{"machine with JIT", "/machines/" + f.web.ID},
		{"machine without JIT", "/machines/" + f.db.ID},
		{"unsupported machine", "/machines/" + f.old.ID},
		{"request page", "/machines/" + f.web.ID + "/request"},
		{"request for several machines", "/request?vm=" + f.web.ID + "&vm=" + f.lb.ID},
		{"disable page", "/machines/" + f.web.ID + "/disable"},
		{"requests", "/requests"},
		{"my access", "/access"},
		{"my account", "/account"},
		{"activity", "/activity"},
		{"admin: users", "/admin/users"},
		{"admin: tokens", "/admin/tokens"},
		{"admin: enrollment", "/admin/enroll"},
		{"admin: delete a user", "/admin/users/rita/delete"},
		{"not found", "/no-such-page"},
	} {
		check(p.name, base+p.path)
	}
}
