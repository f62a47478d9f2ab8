package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// On SIGTERM, ajard answers an agent's long poll at once (with the state
// it has, as when the wait runs out) and exits well within
// --shutdown-timeout, rather than holding the poll until it is cut.
func TestSIGTERMAnswersLongPolls(t *testing.T) {
	const grace = 20 * time.Second
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--shutdown-timeout", grace.String()}})
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	et, err := srv.Admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	enroller, err := client.New(srv.URL, et.Secret, client.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e, err := enroller.Enroll(ctx, jit.Enrollment{Name: "db-7", Hostname: "db-7", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(srv.URL, e.Secret, client.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		st  jit.DesiredState
		err error
	}
	polled := make(chan answer, 1)
	go func() {
		s, err := agent.WatchDesiredState(ctx, st.Revision) // waits up to 30 s for a change
		polled <- answer{s, err}
	}()
	// Wait until the poll is being served: it and the metrics request.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if inFlight(t, srv) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll never reached ajard")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }() // SIGTERM, then waits for the exit
	select {
	case a := <-polled:
		if a.err != nil {
			t.Fatalf("the long poll failed: %v\n%s", a.err, srv.Log.String())
		}
		if a.st.VMID != e.VM.ID || a.st.Revision != st.Revision {
			t.Errorf("the long poll answered %+v, want the unchanged state of %s", a.st, e.VM.ID)
		}
	case <-time.After(grace / 2):
		t.Fatalf("the long poll was not answered within %s of SIGTERM", grace/2)
	}
	select {
	case <-stopped:
	case <-time.After(grace / 2):
		t.Fatalf("ajard did not exit within %s of SIGTERM", grace/2)
	}
	if !srv.Cmd.ProcessState.Success() {
		t.Errorf("ajard exited with %v:\n%s", srv.Cmd.ProcessState, srv.Log.String())
	}
	t.Logf("answered and exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// inFlight reads ajar_http_requests_in_flight.
func inFlight(t *testing.T, srv *ajardtest.Server) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ajardtest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ajar_http_requests_in_flight "); ok {
			n := 0
			for _, r := range v {
				if r < '0' || r > '9' {
					break
				}
				n = n*10 + int(r-'0')
			}
			return n
		}
	}
	t.Fatalf("no ajar_http_requests_in_flight in /metrics:\n%.2000s", b)
	return 0
}

// On SIGTERM, a request under way finishes: here one whose body is still
// coming when the signal arrives is read to its end, served (the group
// is created) and answered, while new connections are already refused.
func TestSIGTERMFinishesRequestsUnderWay(t *testing.T) {
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--shutdown-timeout", "20s"}})
	addr := strings.TrimPrefix(srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"name":"late-group"}`
	head := fmt.Sprintf("POST /api/v1/groups HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, ajardtest.AdminToken, len(body))
	if _, err := io.WriteString(conn, head+body[:5]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); inFlight(t, srv) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached ajard")
		}
	}
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	// Once ajard refuses new connections it is shutting down.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("ajard still accepts connections 10s after SIGTERM")
		}
	}
	if _, err := io.WriteString(conn, body[5:]); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the request under way: %v\n%s", err, srv.Log.String())
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), "late-group") {
		t.Errorf("the request under way got %s %s", resp.Status, b)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("ajard did not exit within 10s of answering")
	}

	// The group was committed: a restarted ajard has it.
	srv2 := ajardtest.Start(t, ajardtest.Options{Dir: srv.Dir, DB: srv.DB})
	groups, err := srv2.Admin.ListGroups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range groups {
		found = found || g.Name == "late-group"
	}
	if !found {
		t.Errorf("the group created during the shutdown is not in the database: %v", groups)
	}
}
