package apitest

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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

// consoleUser creates a user with a password and role bindings and signs
// them in to the console; it returns the session cookie header.
func consoleUser(t *testing.T, s *ajardtest.Server, name string, roleGroup ...string) string {
	t.Helper()
	const password = "console-password-123"
	if _, err := s.Admin.CreateUser(t.Context(), jit.NewUser{Name: name, Password: password}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(roleGroup); i += 2 {
		if _, err := s.Admin.CreateRoleBinding(t.Context(), name, roleGroup[i], roleGroup[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	resp, _ := postForm(t, s, "", "/signin", "user="+name+"&password="+password)
	for _, c := range resp.Cookies() {
		if c.Name == "ajar_session" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("sign in as %s: %d, no session cookie", name, resp.StatusCode)
	return ""
}

// postForm posts a form body to the console with a session cookie ("" for
// none) and returns the answer and its body.
func postForm(t *testing.T, s *ajardtest.Server, cookie, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestConsoleForms checks the console's form limits: a form over 1 MiB is
// refused (413) before it is parsed, a malformed form is a 400 and changes
// nothing (it is not read as an empty form), and the policy editor takes
// at most as many rows as a policy may have ports.
func TestConsoleForms(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	v := vm(t, s.Admin, "prod", "db")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	g := request(t, s.Admin, v.ID, port(22, "PT1H")).Grants[0]
	cookie := consoleUser(t, s, "olga", jit.RoleAdmin, jit.AllGroups)

	// A malformed form must not revoke the grant as if it were empty.
	if resp, body := postForm(t, s, cookie, "/grants/"+g.ID+"/revoke", "x=%zz"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed revoke form: %d, want 400: %.300s", resp.StatusCode, body)
	}
	grants, err := s.Admin.ListGrants(t.Context(), v.ID, "active", "")
	if err != nil || len(grants) != 1 {
		t.Errorf("after a malformed revoke form the grant is not active: %v %+v", err, grants)
	}
	// 2 MiB: over the 1 MiB limit, under Go's default 10 MiB.
	big := "requireJustification=on&x=" + strings.Repeat("a", 2<<20)
	if resp, body := postForm(t, s, cookie, "/machines/"+v.ID+"/policy", big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB policy form: %d, want 413: %.300s", resp.StatusCode, body)
	}

	rows := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "port=%d&protocol=TCP&sources=*&max=PT1H&", 1000+i)
		}
		return b.String()
	}
	resp, body := postForm(t, s, cookie, "/machines/"+v.ID+"/policy", rows(2000)+"action=save")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "at most 64 ports") || len(body) > 64<<10 {
		t.Errorf("policy form with 2000 rows: %d, %d bytes, want a short 400 naming the limit: %.300s", resp.StatusCode, len(body), body)
	}
	// Adding a 65th row goes back to the editor (post/redirect/get), which
	// names the limit.
	resp, _ = postForm(t, s, cookie, "/machines/"+v.ID+"/policy", rows(64)+"action=add")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "draft=") {
		t.Errorf("adding a 65th row: %d to %q, want a redirect to the editor", resp.StatusCode, loc)
	} else {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+loc, nil)
		req.Header.Set("Cookie", cookie)
		page, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(page.Body)
		page.Body.Close()
		if !strings.Contains(string(b), "A JIT policy may have at most 64 ports.") || strings.Count(string(b), `id="port-`) != 65 { // 64 rows and the template's
			t.Errorf("the editor after adding a 65th row: %d port fields, want 65 (64 rows and the template's) and the limit named", strings.Count(string(b), `id="port-`))
		}
	}
	if p, err := s.Admin.GetPolicy(t.Context(), v.ID); err != nil || len(p.Ports) != 1 || p.RequireJustification {
		t.Errorf("policy after refused forms: %v %+v", err, p)
	}
}

// answeredWithin sends head (a request's header and perhaps part of its
// body) on a new connection, then trickles one byte of body every 200 ms,
// and reports how long until the server answered or closed the
// connection (giving up after limit).
func answeredWithin(t *testing.T, s *ajardtest.Server, head string, limit time.Duration) (time.Duration, int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(limit))
	if _, err := conn.Write([]byte(head)); err != nil {
		return time.Since(start), 0
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return time.Since(start), 0
	}
	resp.Body.Close()
	return time.Since(start), resp.StatusCode
}

// TestSlowClients checks that slow clients cannot hold ajard: a body that
// trickles in is cut at --body-timeout, with or without credentials; a
// console form is not read before the session is checked; no more than
// --max-conns connections are held at once.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--body-timeout", "2s", "--max-conns", "16"}})
	group(t, s, "prod")
	tok := user(t, s, "alice", jit.RoleRequester, "prod")

	for _, tc := range []struct{ name, head string }{
		{"API call with a token", "POST /api/v1/requests HTTP/1.1\r\nHost: ajar\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"},
		{"sign-in form", "POST /signin HTTP/1.1\r\nHost: ajar\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nuser=x&password="},
	} {
		d, status := answeredWithin(t, s, tc.head, 15*time.Second)
		t.Logf("%s trickling its body: answered %d after %v", tc.name, status, d.Round(time.Millisecond))
		if d > 8*time.Second {
			t.Errorf("%s trickling its body: connection held %v with --body-timeout 2s", tc.name, d.Round(time.Millisecond))
		}
	}
	// Without a session, a console form goes to the sign-in page before
	// its body is read.
	d, status := answeredWithin(t, s, "POST /machines/x/policy HTTP/1.1\r\nHost: ajar\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n", 15*time.Second)
	if status != http.StatusSeeOther || d > time.Second {
		t.Errorf("console form without a session: %d after %v, want a redirect to sign in at once", status, d.Round(time.Millisecond))
	}

	// 48 idle connections: at most 16 are accepted at once.
	sockets := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Cmd.Process.Pid))
		if err != nil {
			t.Skipf("cannot count ajard's sockets: %v", err)
		}
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.Cmd.Process.Pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		return n
	}
	var conns []net.Conn
	for range 48 {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	held := sockets()
	for _, c := range conns {
		c.Close()
	}
	t.Logf("ajard holds %d sockets with 48 connections open", held)
	if held > 16+1 { // the listener and 16 connections
		t.Errorf("ajard holds %d sockets with 48 connections open and --max-conns 16", held)
	}
	if err := s.Admin.Health(t.Context()); err != nil {
		t.Errorf("health after the connections closed: %v", err)
	}
}

// TestLogFlood checks that what a client sends cannot flood the server's
// log: refused cross-origin posts with 60 KiB Origin headers and 60 KiB
// paths add a few hundred bytes each.
func TestLogFlood(t *testing.T) {
	t.Parallel()
	s := start(t)
	before := len(s.Log.String())
	long := strings.Repeat("o", 60<<10)
	for range 10 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/signin", strings.NewReader("user=x&password=y"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://"+long+".example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin sign-in: %d, want 403", resp.StatusCode)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if grow := len(s.Log.String()) - before; grow > 10*2048 {
		t.Errorf("10 refused requests with long headers grew the server log by %d bytes", grow)
	}
}

// TestHSTS checks that ajard serving TLS itself sends Strict-Transport-
// Security.
func TestHSTS(t *testing.T) {
	t.Parallel()
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--tls", "auto"}})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // loopback, self-signed
	for _, path := range []string{"/healthz", "/signin", "/api/v1/vms"} {
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
			t.Errorf("GET %s over TLS: Strict-Transport-Security %q", path, got)
		}
	}
}

// TestLongPollOutlivesBodyTimeout checks that the body deadline spares
// the agents' long polls: the previous agents' watch, which sends no body,
// and this version's, whose body bounds only the time to send it, both
// wait past --body-timeout and answer the change that ends them.
func TestLongPollOutlivesBodyTimeout(t *testing.T) {
	t.Parallel()
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--body-timeout", "1s"}})
	ctx := t.Context()
	group(t, s, "prod")
	et, err := s.Admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "prod", Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, previous := range []bool{true, false} {
		e, err := s.Client(et.Secret).Enroll(ctx, jit.Enrollment{Name: fmt.Sprintf("db-%v", previous), OS: "linux"})
		if err != nil {
			t.Fatal(err)
		}
		agent := s.Client(e.Secret)
		watch := func(after int64) (jit.DesiredState, error) {
			if previous {
				return agent.WatchDesiredState(ctx, after)
			}
			st, _, err := agent.Watch(ctx, after, jit.Report{Enforceable: true})
			return st, err
		}
		st, err := watch(-1)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			st  jit.DesiredState
			err error
		}
		done := make(chan result, 1)
		go func() {
			st, err := watch(st.Revision)
			done <- result{st, err}
		}()
		select {
		case r := <-done:
			t.Fatalf("previous %v: the watch ended before any change: %+v %v", previous, r.st, r.err)
		case <-time.After(3 * time.Second):
		}
		policy(t, s.Admin, e.VM.ID, false, rule(22, "TCP", "PT1H"))
		select {
		case r := <-done:
			if r.err != nil || len(r.st.Lock) == 0 {
				t.Fatalf("previous %v: watch after 3 s and a change: %+v %v", previous, r.st, r.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("previous %v: the watch did not answer the change", previous)
		}
	}
}
