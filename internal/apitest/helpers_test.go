package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// start starts a fresh ajard for t.
func start(t *testing.T) *ajardtest.Server {
	t.Helper()
	return ajardtest.Start(t, ajardtest.Options{})
}

// rawClient is the plain HTTP client of raw calls.
var rawClient = &http.Client{Timeout: 30 * time.Second}

// call sends one request with a bearer token ("" for none). body is nil
// (no body), []byte (sent as is) or any other value (sent as JSON). It
// returns the status and the response body.
func call(t *testing.T, s *ajardtest.Server, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// apiError is the content of an API error response.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target"`
}

func parseError(t *testing.T, body []byte) apiError {
	t.Helper()
	var eb struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" {
		t.Fatalf("response is not an API error: %v: %s", err, body)
	}
	return eb.Error
}

// wantError checks an error response: its status, code, target (when
// target is not "-") and that its message contains each of msg (case
// insensitive).
func wantError(t *testing.T, status int, body []byte, wantStatus int, code, target string, msg ...string) apiError {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	e := parseError(t, body)
	if e.Code != code {
		t.Errorf("code %q, want %q (message %q)", e.Code, code, e.Message)
	}
	if target != "-" && e.Target != target {
		t.Errorf("target %q, want %q (message %q)", e.Target, target, e.Message)
	}
	for _, m := range msg {
		if !strings.Contains(strings.ToLower(e.Message), strings.ToLower(m)) {
			t.Errorf("message %q does not mention %q", e.Message, m)
		}
	}
	return e
}

// clientError returns err as a *jit.Error, failing t when it is not one
// with the code.
func clientError(t *testing.T, err error, code string) *jit.Error {
	t.Helper()
	e, ok := err.(*jit.Error)
	if !ok || e.Code != code {
		t.Fatalf("error %v (%T), want code %s", err, err, code)
	}
	return e
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// user creates a user with a role binding per (role, group) pair and
// returns its token.
func user(t *testing.T, s *ajardtest.Server, name string, roleGroup ...string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Admin.CreateUser(ctx, jit.NewUser{Name: name}); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	for i := 0; i+1 < len(roleGroup); i += 2 {
		if _, err := s.Admin.CreateRoleBinding(ctx, name, roleGroup[i], roleGroup[i+1]); err != nil {
			t.Fatalf("bind %s %s@%s: %v", name, roleGroup[i], roleGroup[i+1], err)
		}
	}
	tk, err := s.Admin.CreateToken(ctx, jit.NewToken{User: name, Name: "test"})
	if err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return tk.Secret
}

func group(t *testing.T, s *ajardtest.Server, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := s.Admin.CreateGroup(t.Context(), n); err != nil {
			t.Fatalf("create group %s: %v", n, err)
		}
	}
}

func vm(t *testing.T, c *client.Client, grp, name string) jit.VM {
	t.Helper()
	v, err := c.CreateVM(t.Context(), jit.NewVM{Name: name, Group: grp, OS: "linux", Addresses: []string{"10.0.0.10"}})
	if err != nil {
		t.Fatalf("create VM %s/%s: %v", grp, name, err)
	}
	return v
}

// rule is a port rule.
func rule(port int, proto, max string, prefixes ...string) jit.PortRule {
	if len(prefixes) == 0 {
		prefixes = []string{"*"}
	}
	return jit.PortRule{Number: port, Protocol: proto, AllowedSourceAddressPrefixes: prefixes, MaxRequestAccessDuration: max}
}

func policy(t *testing.T, c *client.Client, vmID string, justify bool, rules ...jit.PortRule) jit.Policy {
	t.Helper()
	p, err := c.PutPolicy(t.Context(), vmID, jit.Policy{Ports: rules, RequireJustification: justify})
	if err != nil {
		t.Fatalf("put policy on %s: %v", vmID, err)
	}
	return p
}

// request asks for ports (number, duration) on one VM from the caller's own
// address.
func request(t *testing.T, c *client.Client, vmID string, ports ...jit.PortRequest) jit.Request {
	t.Helper()
	r, err := c.RequestAccess(t.Context(), jit.AccessRequest{
		VirtualMachines: []jit.VMRequest{{ID: vmID, Ports: ports}}, Justification: "test"})
	if err != nil {
		t.Fatalf("request access to %s: %v", vmID, err)
	}
	if len(r.Grants) != len(ports) {
		t.Fatalf("request opened %d grants, want %d: %+v", len(r.Grants), len(ports), r)
	}
	return r
}

func port(n int, duration string) jit.PortRequest {
	return jit.PortRequest{Number: n, Duration: duration}
}

// grantByID returns the grant with id as the admin sees it.
func grantByID(t *testing.T, s *ajardtest.Server, id string) jit.Grant {
	t.Helper()
	gs := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), "", "", ""))
	for _, g := range gs {
		if g.ID == id {
			return g
		}
	}
	t.Fatalf("grant %s not found among %d", id, len(gs))
	return jit.Grant{}
}

func events(t *testing.T, s *ajardtest.Server, q client.EventQuery) []jit.Event {
	t.Helper()
	return must[[]jit.Event](t)(s.Admin.ListEvents(t.Context(), q))
}

func ops(es []jit.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Operation)
	}
	return out
}

// hasInOrder reports whether want appears in got as a subsequence.
func hasInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func verify(t *testing.T, s *ajardtest.Server) jit.Verification {
	t.Helper()
	return must[jit.Verification](t)(s.Admin.Verify(t.Context()))
}

func wantVerified(t *testing.T, s *ajardtest.Server) {
	t.Helper()
	v := verify(t, s)
	n := len(events(t, s, client.EventQuery{}))
	if !v.OK || v.Events != int64(n) || v.FirstBadEvent != nil {
		t.Errorf("verify = %+v, want ok over %d events", v, n)
	}
}

// snapshot is the state bad input must not change.
type snapshot struct {
	events []jit.Event
	vms    string // VMs with revisions and policies
	grants string // grants with statuses
}

func snap(t *testing.T, s *ajardtest.Server) snapshot {
	t.Helper()
	ctx := t.Context()
	vms := must[[]jit.VMView](t)(s.Admin.ListVMs(ctx, "", "", ""))
	var vs []string
	for _, v := range vms {
		p, _ := json.Marshal(v.Policy)
		vs = append(vs, strings.Join([]string{v.ID, v.Group, v.Name, strconv.FormatInt(v.Revision, 10), string(p)}, "|"))
	}
	slices.Sort(vs)
	gs := must[[]jit.Grant](t)(s.Admin.ListGrants(ctx, "", "", ""))
	var gl []string
	for _, g := range gs {
		gl = append(gl, g.ID+"|"+g.Status)
	}
	slices.Sort(gl)
	return snapshot{events: events(t, s, client.EventQuery{}), vms: strings.Join(vs, "\n"), grants: strings.Join(gl, "\n")}
}

// unchanged checks that nothing but refusal events (newEvents of them,
// with operation op) was added since before.
func (before snapshot) unchanged(t *testing.T, s *ajardtest.Server, newEvents int, op string) []jit.Event {
	t.Helper()
	after := snap(t, s)
	if after.vms != before.vms {
		t.Errorf("VMs or policies changed:\nbefore:\n%s\nafter:\n%s", before.vms, after.vms)
	}
	if after.grants != before.grants {
		t.Errorf("grants changed:\nbefore:\n%s\nafter:\n%s", before.grants, after.grants)
	}
	if len(after.events) != len(before.events)+newEvents {
		t.Fatalf("%d new events %v, want %d", len(after.events)-len(before.events), ops(after.events[len(before.events):]), newEvents)
	}
	added := after.events[len(before.events):]
	for _, e := range added {
		if e.Operation != op || e.Outcome != jit.OutcomeFailure {
			t.Errorf("new event %s/%s, want %s/failure", e.Operation, e.Outcome, op)
		}
	}
	return added
}
