package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

var setupLinkRE = regexp.MustCompile(`(https?://\S+)/setup/(ajar_\S+)`)

// setupLink returns the setup link ajard printed last.
func setupLink(t *testing.T, s *ajardtest.Server) string {
	t.Helper()
	m := setupLinkRE.FindAllStringSubmatch(s.Log.String(), -1)
	if len(m) == 0 {
		t.Fatalf("ajard printed no setup link:\n%s", s.Log.String())
	}
	last := m[len(m)-1]
	if last[1] != s.URL {
		t.Fatalf("setup link on %s, server at %s", last[1], s.URL)
	}
	return last[0]
}

type browserless struct {
	t *testing.T
	c *http.Client
}

func newBrowserless(t *testing.T) *browserless {
	jar, _ := cookiejar.New(nil)
	return &browserless{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (b *browserless) do(method, u string, form url.Values) (int, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// A new admin gets into the console from the startup message alone: the
// sign-in page says how, the printed link sets the password once and
// signs in, and every step is in the activity log.
func TestFirstRunSetupLink(t *testing.T) {
	ctx := context.Background()
	s := ajardtest.Start(t, ajardtest.Options{})
	link := setupLink(t, s)
	b := newBrowserless(t)

	status, body := b.do("GET", s.URL+"/signin", nil)
	if status != 200 || !strings.Contains(body, `id="signin-setup"`) {
		t.Fatalf("sign-in page before setup: %d, no first-run help:\n%s", status, body)
	}
	// Pasting the API token says what it is.
	status, body = b.do("POST", s.URL+"/signin", url.Values{"user": {"admin"}, "password": {ajardtest.AdminToken}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "looks like an API token") {
		t.Fatalf("API token as password: %d\n%s", status, body)
	}

	status, body = b.do("GET", link, nil)
	if status != 200 || !strings.Contains(body, "<strong>admin</strong>") {
		t.Fatalf("setup page: %d\n%s", status, body)
	}
	secret := link[strings.LastIndex(link, "/")+1:]

	// Refusals change nothing: passwords that differ, one too short.
	status, body = b.do("POST", s.URL+"/setup", url.Values{"link": {secret}, "password": {"first-password-1"}, "confirm": {"other-password-1"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "differ") {
		t.Fatalf("differing passwords: %d\n%s", status, body)
	}
	status, body = b.do("POST", s.URL+"/setup", url.Values{"link": {secret}, "password": {"short"}, "confirm": {"short"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "at least 12") {
		t.Fatalf("short password: %d\n%s", status, body)
	}
	// An API token is not a setup link, nor the reverse.
	status, _ = b.do("POST", s.URL+"/setup", url.Values{"link": {ajardtest.AdminToken}, "password": {"chosen-password-1"}, "confirm": {"chosen-password-1"}})
	if status != http.StatusUnauthorized {
		t.Fatalf("API token as setup link: %d", status)
	}
	if _, err := s.Client(secret).Whoami(ctx); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("setup link as API token: %v, want unauthorized", err)
	}

	status, body = b.do("POST", s.URL+"/setup", url.Values{"link": {secret}, "password": {"chosen-password-1"}, "confirm": {"chosen-password-1"}})
	if status != 200 || !strings.Contains(body, "Machines") {
		t.Fatalf("setup: %d, not signed in to the machines page:\n%s", status, body)
	}
	// Single use.
	other := newBrowserless(t)
	status, body = other.do("POST", s.URL+"/setup", url.Values{"link": {secret}, "password": {"attacker-password-1"}, "confirm": {"attacker-password-1"}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "unknown, used or expired") {
		t.Fatalf("second use: %d\n%s", status, body)
	}
	status, _ = other.do("GET", link, nil)
	if status != http.StatusUnauthorized {
		t.Fatalf("link page after use: %d", status)
	}
	// The chosen password signs in; the help is gone.
	_, body = other.do("GET", s.URL+"/signin", nil)
	if strings.Contains(body, `id="signin-setup"`) {
		t.Fatalf("first-run help still shown after setup")
	}
	status, body = other.do("POST", s.URL+"/signin", url.Values{"user": {"admin"}, "password": {"chosen-password-1"}})
	if status != 200 || !strings.Contains(body, "Machines") {
		t.Fatalf("sign-in with the chosen password: %d\n%s", status, body)
	}

	events, err := s.Admin.ListEvents(ctx, client.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var made, set, refused, signedIn int
	for _, e := range events {
		d := string(e.Details)
		switch {
		case e.Operation == jit.OpUserSetupLink && e.Outcome == jit.OutcomeSuccess:
			made++
		case e.Operation == jit.OpUserSetPassword && e.Outcome == jit.OutcomeSuccess && strings.Contains(d, "setup link") && e.Actor == "admin":
			set++
		case e.Operation == jit.OpUserSetPassword && e.Outcome == jit.OutcomeFailure && strings.Contains(d, "setup link"):
			refused++
		case e.Operation == jit.OpSignIn && e.Outcome == jit.OutcomeSuccess && strings.Contains(d, "setup link"):
			signedIn++
		}
		if strings.Contains(d, secret) {
			t.Errorf("event %s holds the link's secret: %s", e.Operation, d)
		}
	}
	if made != 1 || set != 1 || signedIn != 1 || refused < 2 {
		t.Errorf("events: %d links made, %d passwords set, %d sign-ins, %d refusals; want 1, 1, 1, ≥2", made, set, signedIn, refused)
	}

	// Once the password is set, a restart prints no link.
	s.Restart() // a new log
	if setupLinkRE.MatchString(s.Log.String()) {
		t.Errorf("restart after setup printed a setup link")
	}
}

// Each start prints a new link while the password is unset; the earlier
// one stops working.
func TestSetupLinkReplacedAtRestart(t *testing.T) {
	s := ajardtest.Start(t, ajardtest.Options{})
	first := setupLink(t, s)
	s.Restart()
	second := setupLink(t, s)
	if first == second {
		t.Fatal("restart printed the same link")
	}
	first = strings.Replace(first, first[:strings.Index(first, "/setup/")], s.URL, 1)
	b := newBrowserless(t)
	if status, _ := b.do("GET", first, nil); status != http.StatusUnauthorized {
		t.Errorf("replaced link: %d, want 401", status)
	}
	if status, _ := b.do("GET", second, nil); status != 200 {
		t.Errorf("new link: %d, want 200", status)
	}
	// A password set another way ends the link.
	if _, err := s.Admin.SetPassword(context.Background(), "admin", "", "cli-password-123"); err != nil {
		t.Fatal(err)
	}
	secret := second[strings.LastIndex(second, "/")+1:]
	status, _ := b.do("POST", s.URL+"/setup", url.Values{"link": {secret}, "password": {"link-password-1"}, "confirm": {"link-password-1"}})
	if status != http.StatusUnauthorized {
		t.Errorf("link after the password was set with the API: %d, want 401", status)
	}
	status, body := b.do("POST", s.URL+"/signin", url.Values{"user": {"admin"}, "password": {"cli-password-123"}})
	if status != 200 || !strings.Contains(body, "Machines") {
		t.Errorf("sign-in with the API's password: %d", status)
	}
}
