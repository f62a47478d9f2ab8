package console_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/console"
)

// chromiumPath is Debian's chromium, which the repository's test command
// installs when missing.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless chromium with a fresh profile and returns
// a context for its first tab, closed when the test ends. The flags keep
// chromium off the network: no background requests, component updates,
// sync or QUIC.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium is not installed (%v); apt-get install -y chromium", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shots saves screenshots under a folder kept when the test fails, and
// with AJAR_UPDATE_SCREENSHOTS=1 also under docs/screenshots.
type shots struct {
	t      *testing.T
	dir    string
	update string
}

func newShots(t *testing.T) *shots {
	dir, err := os.MkdirTemp("", "ajar-console-shots-")
	if err != nil {
		t.Fatal(err)
	}
	s := &shots{t: t, dir: dir}
	if os.Getenv("AJAR_UPDATE_SCREENSHOTS") == "1" {
		_, file, _, _ := runtime.Caller(0)
		s.update = filepath.Join(filepath.Dir(file), "..", "..", "docs", "screenshots")
		if err := os.MkdirAll(s.update, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screenshots kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return s
}

// take saves a PNG of the tab's viewport as name.png.
func (s *shots) take(ctx context.Context, name string) {
	s.t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		s.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), buf, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if s.update != "" {
		small, err := recompress(buf)
		if err != nil {
			s.t.Fatalf("screenshot %s: %v", name, err)
		}
		if len(small) > 300<<10 {
			s.t.Errorf("screenshot %s is %d KB, more than 300 KB", name, len(small)>>10)
		}
		if err := os.WriteFile(filepath.Join(s.update, name+".png"), small, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

// recompress re-encodes a PNG with the best compression, as a paletted
// image when it has at most 256 colours (screenshots of flat pages often
// do).
func recompress(b []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if p := paletted(img); p != nil {
		img = p
	}
	var out bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&out, img); err != nil {
		return nil, err
	}
	if out.Len() > len(b) {
		return b, nil
	}
	return out.Bytes(), nil
}

func paletted(img image.Image) *image.Paletted {
	bounds := img.Bounds()
	index := map[[4]uint32]uint8{}
	var pal color.Palette
	p := image.NewPaletted(bounds, nil)
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			c := img.At(x, y)
			r, g, b, a := c.RGBA()
			k := [4]uint32{r, g, b, a}
			i, ok := index[k]
			if !ok {
				if len(pal) == 256 {
					return nil
				}
				i = uint8(len(pal))
				index[k] = i
				pal = append(pal, c)
			}
			p.Pix[p.PixOffset(x, y)] = i
		}
	}
	p.Palette = pal
	return p
}

// httpUser is a plain HTTP client with its own cookie jar, for what a
// browser would not do (posting forms a page does not offer).
type httpUser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newHTTPUser(t testing.TB, base string) *httpUser {
	jar, _ := cookiejar.New(nil)
	return &httpUser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// post sends a form with extra headers and returns the status, the
// Location and the body.
func (u *httpUser) post(path string, form url.Values, headers ...string) (int, string, string) {
	u.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return u.do(req)
}

func (u *httpUser) get(path string) (int, string, string) {
	u.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u.base+path, nil)
	if err != nil {
		u.t.Fatal(err)
	}
	return u.do(req)
}

func (u *httpUser) do(req *http.Request) (int, string, string) {
	u.t.Helper()
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), b.String()
}

func (u *httpUser) signIn(user, password string) {
	u.t.Helper()
	st, loc, body := u.post("/signin", url.Values{"user": {user}, "password": {password}})
	if st != http.StatusSeeOther || loc != "/machines" {
		u.t.Fatalf("sign in as %s: %d %q\n%s", user, st, loc, body)
	}
}

// setCookie gives the client a session cookie taken from the browser.
func (u *httpUser) setCookie(value string) {
	base, _ := url.Parse(u.base)
	u.c.Jar.SetCookies(base, []*http.Cookie{{Name: console.CookieName, Value: value, Path: "/"}})
}

// sessionCookie returns the browser's session cookie.
func sessionCookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == console.CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in the browser (cookies: %v)", console.CookieName, res.Cookies)
	return nil
}

// download clicks sel and returns the file the browser downloaded.
func download(t *testing.T, ctx context.Context, sel string) []byte {
	t.Helper()
	dir := t.TempDir()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.CallBrowser(tctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true)})
	if err != nil {
		t.Fatalf("download behaviour: %v", err)
	}
	progress := chromedp.BrowserEvents(tctx, browser.DownloadProgress)
	run(t, ctx, "click "+sel, click(sel))
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download %s: %v", sel, err)
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			b, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				t.Fatal(err)
			}
			return b
		case browser.DownloadProgressStateCanceled:
			t.Fatalf("download %s was canceled", sel)
		}
	}
	t.Fatalf("download %s did not complete", sel)
	return nil
}

// run runs browser steps with a timeout.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (at %s)", what, err, loc)
	}
}

func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (at %s)", what, err, loc)
	}
	return v
}

// Steps on the first element a CSS selector finds.
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}
func ready(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitReady(chromedp.CSS(sel)) }
func gone(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitNotPresent(chromedp.CSS(sel))
}
func focus(sel string) chromedp.Action[chromedp.Void] { return chromedp.Focus(chromedp.CSS(sel)) }
func keys(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), v)
}
func setValue(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), v)
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return get(t, ctx, "evaluate "+js, chromedp.Evaluate[T](js))
}

func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func fmtList(v []string) string { return fmt.Sprintf("%q", v) }

// waitText waits (a bounded while) until the element sel holds text sub:
// after a form is sent, the page before may still show a banner like the
// one awaited.
func waitText(t *testing.T, ctx context.Context, sel, sub string) {
	t.Helper()
	js := `(() => { const e = document.querySelector(` + "`" + sel + "`" + `); return e ? e.textContent : ""; })()`
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil {
			got = v
			if strings.Contains(got, sub) {
				return
			}
		}
	}
	t.Fatalf("%s does not come to hold %q (holds %q)", sel, sub, got)
}
