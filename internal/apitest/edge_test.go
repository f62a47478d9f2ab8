package apitest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// rawRequest sends text as one HTTP/1.1 request on a new connection to s
// and returns the status of the answer (0 when the connection closed
// without one).
func rawRequest(t *testing.T, s *ajardtest.Server, text string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go conn.Write([]byte(text)) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetricsLabelsClosed checks that no request can add series to
// /metrics: methods outside the known set count as "other", whatever
// their size, so /metrics stays the same size however many there are.
func TestMetricsLabelsClosed(t *testing.T) {
	t.Parallel()
	s := start(t)
	monitor := user(t, s, "prometheus", jit.RoleReader, jit.AllGroups)
	scrape := func() string {
		st, body := call(t, s, monitor, http.MethodGet, "/metrics", nil)
		if st != http.StatusOK {
			t.Fatalf("metrics: %d %s", st, body)
		}
		return string(body)
	}
	send := func(method string) {
		for _, path := range []string{"/api/v1/vms", "/machines", "/subscriptions/x"} {
			rawRequest(t, s, method+" "+path+" HTTP/1.1\r\nHost: ajar\r\nConnection: close\r\n\r\n")
		}
	}
	send("BREW0") // one "other" method first, so that its series exist
	scrape()
	before := len(scrape())
	for i := range 20 {
		send(fmt.Sprintf("BREW%d", i+1) + strings.Repeat("X", 8<<10))
	}
	send(strings.Repeat("M", 256<<10))
	after := scrape()
	if strings.Contains(after, "BREW") || strings.Contains(after, "MMMM") {
		t.Errorf("/metrics holds a method name sent by a client")
	}
	// Counters and the Go runtime's figures change a little; series do not.
	if grow := len(after) - before; grow > 2048 {
		t.Errorf("/metrics grew by %d bytes after 21 requests with made-up methods", grow)
	}
	if !strings.Contains(after, `method="other"`) {
		t.Errorf("/metrics counts made-up methods not as \"other\"")
	}
}

// TestForwardedForUnknown checks that behind a trusted proxy whose
// X-Forwarded-For names no address ("unknown", garbage), "my IP" is
// refused with a message: it must never open the port for the proxy.
func TestForwardedForUnknown(t *testing.T) {
	t.Parallel()
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--trusted-proxies", "127.0.0.1"}})
	group(t, s, "prod")
	v := vm(t, s.Admin, "prod", "db")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	tok := user(t, s, "alice", jit.RoleRequester, "prod")
	for _, xff := range []string{"unknown", "198.51.100.9, not-an-ip"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/api/v1/requests",
			strings.NewReader(`{"virtualMachines":[{"id":"`+v.ID+`","ports":[{"number":22,"duration":"PT1M"}]}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb struct{ Error apiError }
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || eb.Error.Message == "" {
			t.Errorf("X-Forwarded-For %q: status %d %+v, want a refusal with a message", xff, resp.StatusCode, eb.Error)
		}
		t.Logf("X-Forwarded-For %q: %d %s", xff, resp.StatusCode, eb.Error.Message)
	}
	grants, err := s.Admin.ListGrants(t.Context(), v.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 0 {
		t.Errorf("grants opened for an unknown client: %+v", grants)
	}
}
