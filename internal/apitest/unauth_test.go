package apitest

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"

	"github.com/ajarhq/ajar/internal/jit"
)

// apiRoutes is every route of internal/server/routes.go under /api/v1,
// with "x" for path values.
var apiRoutes = []struct{ method, path string }{
	{"GET", "/api/v1/openapi.json"},
	{"GET", "/api/v1/whoami"},
	{"POST", "/api/v1/groups"},
	{"GET", "/api/v1/groups"},
	{"POST", "/api/v1/vms"},
	{"GET", "/api/v1/vms"},
	{"GET", "/api/v1/vms/x"},
	{"DELETE", "/api/v1/vms/x"},
	{"PUT", "/api/v1/vms/x/policy"},
	{"GET", "/api/v1/vms/x/policy"},
	{"DELETE", "/api/v1/vms/x/policy"},
	{"GET", "/api/v1/vms/x/recommendation"},
	{"GET", "/api/v1/vms/x/desired-state"},
	{"POST", "/api/v1/requests"},
	{"GET", "/api/v1/requests"},
	{"GET", "/api/v1/requests/pending"},
	{"GET", "/api/v1/requests/x"},
	{"POST", "/api/v1/requests/x/approve"},
	{"POST", "/api/v1/requests/x/deny"},
	{"POST", "/api/v1/requests/x/cancel"},
	{"GET", "/api/v1/grants"},
	{"POST", "/api/v1/grants/x/revoke"},
	{"GET", "/api/v1/activity"},
	{"GET", "/api/v1/activity?format=csv"},
	{"GET", "/api/v1/activity/verify"},
	{"GET", "/api/v1/activity?follow=1"},
	{"GET", "/api/v1/activity/archive?before=2030-01-01T00:00:00Z"},
	{"POST", "/api/v1/activity/archive"},
	{"POST", "/api/v1/users"},
	{"GET", "/api/v1/users"},
	{"DELETE", "/api/v1/users/x"},
	{"PUT", "/api/v1/users/x/password"},
	{"POST", "/api/v1/tokens"},
	{"GET", "/api/v1/tokens"},
	{"DELETE", "/api/v1/tokens/x"},
	{"POST", "/api/v1/rolebindings"},
	{"GET", "/api/v1/rolebindings"},
	{"DELETE", "/api/v1/rolebindings/x"},
	{"POST", "/api/v1/enrollment-tokens"},
	{"POST", "/api/v1/agent/enroll"},
	{"GET", "/api/v1/agent/desired-state"},
	{"GET", "/api/v1/agent/desired-state?after=0"},
	{"POST", "/api/v1/agent/report"},
	{"POST", "/api/v1/agent/events"},
	{"GET", "/api/v1/no-such-route"},
}

// TestUnauthenticated checks that nothing under /api/v1 answers without a
// valid token, and that /healthz does.
func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "A")
	revoked, err := s.Admin.CreateToken(t.Context(), jit.NewToken{User: "admin", Name: "soon revoked"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Admin.RevokeToken(t.Context(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	expired, err := s.Admin.CreateToken(t.Context(), jit.NewToken{User: "admin", Name: "short-lived", TTL: "PT1S"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(*expired.ExpiresAt) + 100*time.Millisecond)
	before := snap(t, s)

	st, body := call(t, s, "", "GET", "/healthz", nil)
	if st != http.StatusOK {
		t.Errorf("/healthz = %d %s, want 200", st, body)
	}

	credentials := []struct{ name, header string }{
		{"no token", ""},
		{"empty bearer", "Bearer "},
		{"garbage token", "Bearer garbage"},
		{"unknown ajar token", "Bearer ajar_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"revoked token", "Bearer " + revoked.Secret},
		{"expired token", "Bearer " + expired.Secret},
		{"admin token as basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+ajardtest.AdminToken))},
		{"admin token without scheme", ajardtest.AdminToken},
	}
	for _, c := range credentials {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range apiRoutes {
				req, err := http.NewRequestWithContext(t.Context(), r.method, s.URL+r.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				resp, err := rawClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 4096)
				n, _ := resp.Body.Read(b)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s = %d, want 401: %s", r.method, r.path, resp.StatusCode, b[:n])
					continue
				}
				if e := parseError(t, b[:n]); e.Code != jit.EUnauthorized {
					t.Errorf("%s %s: code %q, want unauthorized", r.method, r.path, e.Code)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s: 401 without WWW-Authenticate", r.method, r.path)
				}
			}
		})
	}
	before.unchanged(t, s, 0, "")
}
