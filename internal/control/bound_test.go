package control_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// logged returns the activity events of operation op, oldest first.
func logged(t *testing.T, ctl *control.Control, op string) []jit.Event {
	t.Helper()
	var out []jit.Event
	err := ctl.Store().View(context.Background(), func(tx store.Tx) error {
		return tx.WalkEvents(func(e *jit.Event) bool {
			if e.Operation == op {
				out = append(out, *e)
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRefusalDetailsBounded checks that a refused request is logged with
// what was refused and why, its strings cut to their limits: a 1 MB
// justification is not stored.
func TestRefusalDetailsBounded(t *testing.T) {
	ctl, _, admin, vm := setup(t)
	ctx := context.Background()
	bob := actor(t, ctl, admin, "bob", jit.RoleRequester, "prod", "198.51.100.9")
	huge := strings.Repeat("é", 512<<10) // 1 MiB
	many := make([]jit.VMRequest, 5000)
	for i := range many {
		many[i] = jit.VMRequest{ID: strings.Repeat("x", 200), Ports: []jit.PortRequest{{Number: 22}}}
	}
	for _, tc := range []struct {
		name   string
		r      jit.AccessRequest
		target string
	}{
		{"long justification", jit.AccessRequest{Justification: huge, VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22}}}}}, "justification"},
		{"many VMs", jit.AccessRequest{Justification: "x", VirtualMachines: many}, "virtualMachines"},
		{"long VM id", jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: huge, Ports: []jit.PortRequest{{Number: 22}}}}}, "virtualMachines[0].id"},
	} {
		before := len(logged(t, ctl, jit.OpRequestRefuse))
		if _, err := ctl.RequestAccess(ctx, bob, tc.r); jit.ErrorCode(err) == "" || jit.ErrorCode(err) == jit.EInternal {
			t.Fatalf("%s: request = %v, want a refusal", tc.name, err)
		}
		es := logged(t, ctl, jit.OpRequestRefuse)
		if len(es) != before+1 {
			t.Fatalf("%s: %d refusals logged, want 1", tc.name, len(es)-before)
		}
		e := es[len(es)-1]
		if len(e.Details) > control.MaxLoggedDetails {
			t.Errorf("%s: details are %d bytes, more than %d", tc.name, len(e.Details), control.MaxLoggedDetails)
		}
		var d struct {
			Error   string `json:"error"`
			Target  string `json:"target"`
			Request struct {
				Justification   string `json:"justification"`
				VirtualMachines []any  `json:"virtualMachines"`
			} `json:"request"`
		}
		if err := json.Unmarshal(e.Details, &d); err != nil {
			t.Fatalf("%s: details %.200s: %v", tc.name, e.Details, err)
		}
		if d.Error == "" || (tc.target != "" && d.Target != tc.target && tc.name != "long VM id") {
			t.Errorf("%s: logged error %q target %q, want why (target %s)", tc.name, d.Error, d.Target, tc.target)
		}
		if j := d.Request.Justification; len(j) > control.MaxLoggedString+64 || (tc.name == "long justification" && !strings.HasPrefix(j, "éé")) {
			t.Errorf("%s: logged justification of %d bytes (%.40q), want what was sent cut to %d", tc.name, len(j), j, control.MaxLoggedString)
		}
		if n := len(d.Request.VirtualMachines); n > control.MaxLoggedItems+1 || n == 0 {
			t.Errorf("%s: %d VMs logged, want 1 to %d", tc.name, n, control.MaxLoggedItems+1)
		}
	}
}

// TestRefusalsRateLimited checks that a principal's refusals are limited:
// past the burst it gets rate_limited with a wait, the log gets one
// summary instead of every refusal, and the next logged refusal says how
// many went unlogged.
func TestRefusalsRateLimited(t *testing.T) {
	ctl, clk, admin, vm := setup(t)
	ctx := context.Background()
	eve := actor(t, ctl, admin, "eve", jit.RoleReader, "prod", "198.51.100.9") // may not request
	req := jit.AccessRequest{Justification: strings.Repeat("j", 1000), VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22}}}}}
	for i := range control.RefusalBurst {
		if _, err := ctl.RequestAccess(ctx, eve, req); jit.ErrorCode(err) != jit.EForbidden {
			t.Fatalf("refusal %d = %v, want forbidden", i, err)
		}
	}
	for i := range 50 {
		_, err := ctl.RequestAccess(ctx, eve, req)
		if jit.ErrorCode(err) != jit.ERateLimited || jit.ErrorRetryAfter(err) <= 0 || jit.ErrorRetryAfter(err) > control.RefusalEvery {
			t.Fatalf("refusal %d past the burst = %v (retry after %v), want rate_limited within %v", i, err, jit.ErrorRetryAfter(err), control.RefusalEvery)
		}
	}
	es := logged(t, ctl, jit.OpRequestRefuse)
	if len(es) != control.RefusalBurst+1 {
		t.Fatalf("%d refusals logged, want %d and one summary", len(es), control.RefusalBurst)
	}
	if !strings.Contains(string(es[len(es)-1].Details), `"rateLimited":true`) {
		t.Errorf("last event %s, want the summary", es[len(es)-1].Details)
	}

	// Another principal is not limited by eve's refusals.
	mallory := actor(t, ctl, admin, "mallory", jit.RoleReader, "prod", "198.51.100.9")
	if _, err := ctl.RequestAccess(ctx, mallory, req); jit.ErrorCode(err) != jit.EForbidden {
		t.Errorf("another principal's refusal = %v, want forbidden", err)
	}

	clk.add(control.RefusalEvery)
	if _, err := ctl.RequestAccess(ctx, eve, req); jit.ErrorCode(err) != jit.EForbidden {
		t.Fatalf("refusal after the wait = %v, want forbidden", err)
	}
	es = logged(t, ctl, jit.OpRequestRefuse)
	if d := string(es[len(es)-1].Details); !strings.Contains(d, `"refusalsNotLogged":50`) {
		t.Errorf("refusal after the wait logged %s, want refusalsNotLogged 50", d)
	}
}

// TestUsedUpEnrollTokenAuthenticatesNothing checks that an enrollment
// token stands for no one once used up or expired.
func TestUsedUpEnrollTokenAuthenticatesNothing(t *testing.T) {
	ctl, clk, admin, _ := setup(t)
	ctx := context.Background()
	addr := netip.MustParseAddr("198.51.100.20")
	once, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	later, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: 5, TTL: "PT10M"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ctl.Authenticate(ctx, once.Secret, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Enroll(ctx, a, jit.Enrollment{Name: "host-1", Hostname: "host-1"}); err != nil {
		t.Fatal(err)
	}
	if a, err := ctl.Authenticate(ctx, once.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("used-up enrollment token authenticates %+v, %v; want unauthorized", a, err)
	}
	clk.add(10 * time.Minute)
	if a, err := ctl.Authenticate(ctx, later.Secret, addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("expired enrollment token authenticates %+v, %v; want unauthorized", a, err)
	}
}

// TestReportBounded checks that an agent's report strings and lists are
// bounded, and refused with the field and the bound named.
func TestReportBounded(t *testing.T) {
	ctl, _, admin, _ := setup(t)
	ctx := context.Background()
	et, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	ea, err := ctl.Authenticate(ctx, et.Secret, netip.MustParseAddr("198.51.100.20"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Enroll(ctx, ea, jit.Enrollment{Name: "host-1", Hostname: strings.Repeat("h", 300)}); jit.ErrorTarget(err) != "hostname" {
		t.Errorf("enrollment with a 300-byte hostname = %v, want invalid hostname", err)
	}
	en, err := ctl.Enroll(ctx, ea, jit.Enrollment{Name: "host-1", Hostname: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := ctl.Authenticate(ctx, en.Secret, netip.MustParseAddr("198.51.100.20"))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	socks := make([]jit.Socket, control.MaxSockets+1)
	for i := range socks {
		socks[i] = jit.Socket{Protocol: jit.ProtoTCP, Port: i + 1}
	}
	for _, tc := range []struct {
		r      jit.Report
		target string
	}{
		{jit.Report{Hostname: big}, "hostname"},
		{jit.Report{OS: big}, "os"},
		{jit.Report{Reason: big}, "reason"},
		{jit.Report{Listening: socks}, "listening"},
		{jit.Report{Exposed: socks}, "exposed"},
		{jit.Report{Listening: []jit.Socket{{Protocol: big, Port: 22}}}, "listening[0].protocol"},
		{jit.Report{Listening: []jit.Socket{{Protocol: "TCP", Port: 22, Address: big}}}, "listening[0].address"},
		{jit.Report{Exposed: []jit.Socket{{Protocol: "UDP", Port: 70000}}}, "exposed[0].port"},
	} {
		err := ctl.Report(ctx, agent, tc.r)
		if jit.ErrorCode(err) != jit.EInvalid || jit.ErrorTarget(err) != tc.target {
			t.Errorf("report refused with %v, want invalid %s", err, tc.target)
		}
	}
	ok := jit.Report{Hostname: "host-1", OS: "linux", Listening: socks[:control.MaxSockets], Enforceable: true}
	if err := ctl.Report(ctx, agent, ok); err != nil {
		t.Errorf("report within the bounds: %v", err)
	}
}

// TestAgentEventsRateLimited checks that an agent credential cannot grow
// the activity log without bound through its events.
func TestAgentEventsRateLimited(t *testing.T) {
	ctl, clk, admin, _ := setup(t)
	ctx := context.Background()
	et, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	ea, err := ctl.Authenticate(ctx, et.Secret, netip.MustParseAddr("198.51.100.20"))
	if err != nil {
		t.Fatal(err)
	}
	en, err := ctl.Enroll(ctx, ea, jit.Enrollment{Name: "host-1", Hostname: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := ctl.Authenticate(ctx, en.Secret, netip.MustParseAddr("198.51.100.20"))
	if err != nil {
		t.Fatal(err)
	}
	ev := jit.AgentEvent{Operation: jit.OpDriftDetect, Details: json.RawMessage(`{"detail":"` + strings.Repeat("d", 8<<10) + `"}`)}
	for i := range control.AgentEventBurst {
		if err := ctl.RecordAgentEvent(ctx, agent, ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	for range 10 {
		err := ctl.RecordAgentEvent(ctx, agent, ev)
		if jit.ErrorCode(err) != jit.ERateLimited || jit.ErrorRetryAfter(err) <= 0 {
			t.Fatalf("event past the burst = %v, want rate_limited with a wait", err)
		}
	}
	if n := len(logged(t, ctl, jit.OpDriftDetect)); n != control.AgentEventBurst {
		t.Errorf("%d events logged, want %d", n, control.AgentEventBurst)
	}
	clk.add(control.AgentEventEvery)
	if err := ctl.RecordAgentEvent(ctx, agent, ev); err != nil {
		t.Errorf("event after the wait: %v", err)
	}
}
