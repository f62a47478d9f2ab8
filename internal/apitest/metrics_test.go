package apitest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestMetrics checks the Prometheus endpoint: authenticated, for readers
// of every group only, and counting requests by route.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	v := vm(t, s.Admin, "prod", "db")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	request(t, s.Admin, v.ID, port(22, "PT1M"))
	monitor := user(t, s, "prometheus", jit.RoleReader, jit.AllGroups)
	requester := user(t, s, "alice", jit.RoleRequester, "prod")

	if st, _ := call(t, s, "", http.MethodGet, "/metrics", nil); st != http.StatusUnauthorized {
		t.Fatalf("metrics without a token: %d, want 401", st)
	}
	if st, body := call(t, s, requester, http.MethodGet, "/metrics", nil); st != http.StatusForbidden {
		t.Fatalf("metrics as a requester of one group: %d %s, want 403", st, body)
	}
	st, body := call(t, s, monitor, http.MethodGet, "/metrics", nil)
	if st != http.StatusOK {
		t.Fatalf("metrics as a reader of every group: %d %s", st, body)
	}
	for _, want := range []string{
		`ajar_http_requests_total{code="201",method="POST",route="POST /api/v1/requests"} 1`,
		`ajar_http_request_duration_seconds_bucket{route="PUT /api/v1/vms/{id}/policy"`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
