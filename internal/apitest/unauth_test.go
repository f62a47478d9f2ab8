package apitest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"

	"github.com/ajarhq/ajar/internal/jit"
)

// apiRoutes is every route of the API's OpenAPI document that needs a
// token (so none can be added without this test covering it), with "x"
// for path values, and a few spellings the document does not hold.
func apiRoutes(t *testing.T) []struct{ method, path string } {
	b, err := os.ReadFile("../server/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Security *[]any `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := []struct{ method, path string }{
		{"GET", "/api/v1/activity?format=csv"},
		{"GET", "/api/v1/agent/desired-state?after=0"},
		{"GET", "/api/v1/activity?follow=1"},
		{"GET", "/api/v1/activity/archive?before=2030-01-01T00:00:00Z"},
		{"GET", "/api/v1/no-such-route"},
	}
	values := regexp.MustCompile(`\{[^}]+\}`)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if op.Security != nil && len(*op.Security) == 0 {
				continue // documented as needing no token
			}
			out = append(out, struct{ method, path string }{strings.ToUpper(method), values.ReplaceAllString(path, "x")})
		}
	}
	if len(out) < 40 {
		t.Fatalf("only %d routes read from openapi.json", len(out))
	}
	return out
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
	routes := apiRoutes(t)

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
			for _, r := range routes {
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
