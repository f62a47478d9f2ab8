package apitest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestTrustedProxies checks where "my IP" comes from: X-Forwarded-For is
// believed only from the proxies --trusted-proxies lists, and then only
// its right-most hop that is not itself a trusted proxy.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		xff     []string
		wantSrc string
	}{
		{"no trusted proxies: the header is ignored", nil, []string{"198.51.100.9"}, "127.0.0.1/32"},
		{"trusted loopback proxy", []string{"--trusted-proxies", "127.0.0.1/32"}, []string{"198.51.100.9"}, "198.51.100.9/32"},
		{"spoofed left-most hop is skipped", []string{"--trusted-proxies", "127.0.0.0/8,203.0.113.0/24"}, []string{"192.0.2.66, 198.51.100.9", "203.0.113.5"}, "198.51.100.9/32"},
		{"a hop with a port", []string{"--trusted-proxies", "127.0.0.1"}, []string{"198.51.100.9:4711"}, "198.51.100.9/32"},
		{"an IPv6 hop with a port", []string{"--trusted-proxies", "127.0.0.1"}, []string{"[2001:db8::9]:443"}, "2001:db8::9/128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ajardtest.Start(t, ajardtest.Options{Args: tc.args})
			group(t, s, "prod")
			v := vm(t, s.Admin, "prod", "db")
			policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
			tok := user(t, s, "alice", jit.RoleRequester, "prod")
			body, _ := json.Marshal(jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: v.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT1M"}}}}})
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/api/v1/requests", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+tok)
			for _, h := range tc.xff {
				req.Header.Add("X-Forwarded-For", h)
			}
			resp, err := rawClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r jit.Request
			if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Grants) != 1 {
				t.Fatalf("request: status %d, %+v", resp.StatusCode, r)
			}
			if r.Grants[0].Source != tc.wantSrc {
				t.Fatalf("grant source = %s, want %s", r.Grants[0].Source, tc.wantSrc)
			}
		})
	}
}
