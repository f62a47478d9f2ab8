package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/azureapi"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/console"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

const (
	edgeToken    = "ajar_test-admin-token-0123456789"
	edgeSub      = "00000000-0000-0000-0000-0000000000e1"
	edgePassword = "edge-password-1234"
)

// edge is ajard's HTTP stack as cmd/ajard builds it (API, console, Azure
// API) over a SQLite store, served on loopback.
type edge struct {
	url   string
	db    *sqlite.DB
	admin *client.Client
}

func newEdge(t *testing.T, trustedProxies ...netip.Prefix) *edge {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctl := control.New(db, log, time.Now)
	if _, err := ctl.Bootstrap(ctx, edgeToken); err != nil {
		t.Fatal(err)
	}
	api := server.New(ctl, log, trustedProxies)
	api.Handle("/", console.New(ctl, log, api.ClientAddr))
	api.Handle("/subscriptions/", azureapi.New(ctl, log, []string{edgeSub}, "westeurope", api.ClientAddr))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	admin, err := client.New(srv.URL, edgeToken, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateUser(ctx, jit.NewUser{Name: "olga", Password: edgePassword}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateRoleBinding(ctx, "olga", jit.RoleAdmin, jit.AllGroups); err != nil {
		t.Fatal(err)
	}
	return &edge{url: srv.URL, db: db, admin: admin}
}

// do sends a request with the given headers (and form, for a POST) and
// returns the response with its body read.
func (e *edge) do(t *testing.T, method, path string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// signIn signs olga in to the console and returns her session cookie.
func (e *edge) signIn(t *testing.T, header ...string) *http.Cookie {
	t.Helper()
	resp, body := e.do(t, http.MethodPost, "/signin", url.Values{"user": {"olga"}, "password": {edgePassword}}, header...)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			return c
		}
	}
	t.Fatal("sign in set no session cookie")
	return nil
}

// TestUnavailable closes the database under a serving ajard: the API and
// the Azure-compatible API answer 503 with Retry-After, the console shows
// that ajar is temporarily unavailable instead of sending a signed-in user
// to the sign-in page.
func TestUnavailable(t *testing.T) {
	e := newEdge(t)
	cookie := e.signIn(t)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}

	resp, body := e.do(t, http.MethodGet, "/api/v1/vms", nil, "Authorization", "Bearer "+edgeToken)
	var eb httpio.ErrorBody
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &eb) != nil || eb.Error.Code != jit.EUnavailable {
		t.Errorf("API with the database closed: %d %s, want 503 and code %q", resp.StatusCode, body, jit.EUnavailable)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("API 503 without Retry-After")
	}

	resp, body = e.do(t, http.MethodGet, "/subscriptions/"+edgeSub+"/providers/Microsoft.Security/jitNetworkAccessPolicies?api-version=2020-01-01", nil, "Authorization", "Bearer "+edgeToken)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("Azure API with the database closed: %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	for _, path := range []string{"/machines", "/activity"} {
		resp, body = e.do(t, http.MethodGet, path, nil, "Cookie", cookie.Name+"="+cookie.Value)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "temporarily unavailable") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("console %s with the database closed: %d (Retry-After %q), want 503 saying it is temporarily unavailable:\n%.300s", path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	resp, body = e.do(t, http.MethodPost, "/signin", url.Values{"user": {"olga"}, "password": {edgePassword}})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "temporarily unavailable") {
		t.Errorf("console sign-in with the database closed: %d, want 503 saying it is temporarily unavailable:\n%.300s", resp.StatusCode, body)
	}
}

// TestForwardedScheme checks what a trusted TLS-terminating proxy says
// about the client's side: X-Forwarded-Proto makes the session cookie
// Secure and adds HSTS, and the Azure API's nextLink uses the scheme and
// host the client used. The same headers from a peer that is not a
// trusted proxy change nothing.
func TestForwardedScheme(t *testing.T) {
	fwd := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "jit.example:8443", "X-Forwarded-For", "203.0.113.5"}
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		https   bool
	}{
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{"untrusted peer", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEdge(t, tc.proxies...)
			ctx := t.Context()
			for _, g := range []string{"rg-a", "rg-b"} {
				if _, err := e.admin.CreateGroup(ctx, g); err != nil {
					t.Fatal(err)
				}
				vm, err := e.admin.CreateVM(ctx, jit.NewVM{Name: "vm-" + g, Group: g, OS: "linux"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.admin.PutPolicy(ctx, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}}}); err != nil {
					t.Fatal(err)
				}
			}

			resp, body := e.do(t, http.MethodPost, "/signin", url.Values{"user": {"olga"}, "password": {edgePassword}}, fwd...)
			var secure, found bool
			for _, c := range resp.Cookies() {
				if c.Name == console.CookieName {
					found, secure = true, c.Secure
				}
			}
			if !found {
				t.Fatalf("sign in: %d, no cookie: %s", resp.StatusCode, body)
			}
			if secure != tc.https {
				t.Errorf("session cookie Secure = %v, want %v", secure, tc.https)
			}
			if got := resp.Header.Get("Strict-Transport-Security"); (got != "") != tc.https {
				t.Errorf("Strict-Transport-Security = %q on the sign-in answer, want it only under TLS", got)
			}

			resp, body = e.do(t, http.MethodGet, "/subscriptions/"+edgeSub+"/providers/Microsoft.Security/jitNetworkAccessPolicies?api-version=2020-01-01&$top=1",
				nil, append([]string{"Authorization", "Bearer " + edgeToken}, fwd...)...)
			var page azureapi.PolicyList
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
				t.Fatalf("Azure list: %d %s", resp.StatusCode, body)
			}
			want := e.url + "/"
			if tc.https {
				want = "https://jit.example:8443/"
			}
			if !strings.HasPrefix(page.NextLink, want) {
				t.Errorf("nextLink = %q, want it to start with %q", page.NextLink, want)
			}
			if got := resp.Header.Get("Strict-Transport-Security"); (got != "") != tc.https {
				t.Errorf("Strict-Transport-Security = %q on the Azure API, want it only under TLS", got)
			}
		})
	}
}

// TestClientAddr checks which address "my IP" is: the peer's, or behind
// a trusted proxy the right-most X-Forwarded-For entry that is not a
// trusted proxy, written with or without a port; an entry that is no
// address makes the client's address unknown, never the proxy's.
func TestClientAddr(t *testing.T) {
	s := server.New(nil, slog.New(slog.DiscardHandler), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")})
	for _, tc := range []struct {
		peer string
		xff  []string
		want string // "" for unknown
	}{
		{"127.0.0.1:5000", nil, "127.0.0.1"},
		{"127.0.0.1:5000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"127.0.0.1:5000", []string{"203.0.113.5:4711"}, "203.0.113.5"},
		{"127.0.0.1:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"127.0.0.1:5000", []string{"[2001:db8::2]"}, "2001:db8::2"},
		{"127.0.0.1:5000", []string{"2001:db8::3"}, "2001:db8::3"},
		{"127.0.0.1:5000", []string{"198.51.100.7, 203.0.113.5:80, 192.0.2.9:1234"}, "203.0.113.5"},
		{"127.0.0.1:5000", []string{"198.51.100.7", "192.0.2.9"}, "198.51.100.7"},
		{"127.0.0.1:5000", []string{"192.0.2.9"}, "192.0.2.9"},
		{"127.0.0.1:5000", []string{"unknown"}, ""},
		{"127.0.0.1:5000", []string{"198.51.100.7, unknown"}, ""},
		{"127.0.0.1:5000", []string{"198.51.100.7, _hidden"}, ""},
		{"127.0.0.1:5000", []string{"203.0.113.5:notaport"}, ""},
		{"198.51.100.1:5000", []string{"203.0.113.5"}, "198.51.100.1"},
		{"[2001:db8::9]:5000", []string{"unknown"}, "2001:db8::9"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		for _, h := range tc.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		got := s.ClientAddr(r)
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got.String() != tc.want) {
			t.Errorf("peer %s, X-Forwarded-For %q: %v, want %q", tc.peer, tc.xff, got, tc.want)
		}
	}
}
