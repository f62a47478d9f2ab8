package apitest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// enrollAgent enrolls an agent VM into group and returns the VM and the
// agent's client.
func enrollAgent(t *testing.T, s *ajardtest.Server, grp, name string) (jit.VM, *client.Client) {
	t.Helper()
	st, body := call(t, s, ajardtest.AdminToken, "POST", "/api/v1/enrollment-tokens", map[string]any{"group": grp, "ttl": "PT10M", "uses": 1})
	if st != http.StatusCreated {
		t.Fatalf("create enrollment token = %d %s", st, body)
	}
	var et jit.CreatedToken
	if err := json.Unmarshal(body, &et); err != nil {
		t.Fatal(err)
	}
	st, body = call(t, s, et.Secret, "POST", "/api/v1/agent/enroll", jit.Enrollment{Name: name, Hostname: name, OS: "linux"})
	if st != http.StatusCreated {
		t.Fatalf("enroll = %d %s", st, body)
	}
	var en jit.Enrolled
	if err := json.Unmarshal(body, &en); err != nil {
		t.Fatal(err)
	}
	return en.VM, s.Client(en.Secret)
}

// agentGrants waits for the agent's desired state past revision after and
// returns it with its grants' remaining seconds by id.
func agentGrants(t *testing.T, agent *client.Client, after int64) (jit.DesiredState, map[string]int64) {
	t.Helper()
	ds, err := agent.WatchDesiredState(t.Context(), after)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Revision <= after {
		t.Fatalf("desired state revision %d, want past %d", ds.Revision, after)
	}
	out := map[string]int64{}
	for _, g := range ds.Grants {
		out[g.ID] = g.RemainingSeconds
	}
	return ds, out
}

// cause returns the operation an event names as its cause.
func cause(t *testing.T, e jit.Event) string {
	t.Helper()
	var d struct {
		Cause struct {
			Operation string `json:"operation"`
		} `json:"cause"`
	}
	if err := json.Unmarshal(e.Details, &d); err != nil {
		t.Fatal(err)
	}
	return d.Cause.Operation
}

// TestGrantsFollowChanges: through the REST API, a narrowed policy and a
// removed role binding end the grants they no longer allow, and the
// agent's desired state drops them at once.
func TestGrantsFollowChanges(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := t.Context()
	group(t, s, "A")
	host, agent := enrollAgent(t, s, "A", "host-1")
	policy(t, s.Admin, host.ID, false, rule(22, "TCP", "PT3H"))
	bob := user(t, s, "bob")
	asRequester := must[jit.RoleBinding](t)(s.Admin.CreateRoleBinding(ctx, "bob", jit.RoleRequester, "A"))
	anySource := must[jit.RoleBinding](t)(s.Admin.CreateRoleBinding(ctx, "bob", jit.RoleRequesterAnySource, "A"))
	bobC := s.Client(bob)
	anywhere := request(t, bobC, host.ID, jit.PortRequest{Number: 22, AllowedSourceAddressPrefix: "0.0.0.0/0", Duration: "PT3H"}).Grants[0]
	own := request(t, bobC, host.ID, port(22, "PT3H")).Grants[0]
	ds, got := agentGrants(t, agent, -1)
	if len(got) != 2 {
		t.Fatalf("agent's grants %v, want 2", got)
	}

	// Narrowed to loopback sources and one hour.
	policy(t, s.Admin, host.ID, false, rule(22, "TCP", "PT1H", "127.0.0.0/8"))
	ds, got = agentGrants(t, agent, ds.Revision)
	if len(got) != 1 || got[own.ID] == 0 || got[own.ID] > 3600 {
		t.Fatalf("agent's grants after narrowing %v, want only %s with at most an hour", got, own.ID)
	}
	if g := grantByID(t, s, anywhere.ID); g.Status != jit.GrantRevoked {
		t.Errorf("grant from anywhere after narrowing: %s", g.Status)
	}
	if g := grantByID(t, s, own.ID); !g.EndTime.Equal(own.StartTime.Add(time.Hour)) {
		t.Errorf("own grant ends %v, want an hour after its start %v", g.EndTime, own.StartTime)
	}
	for _, op := range []string{jit.OpGrantRevoke, jit.OpGrantShorten} {
		es := events(t, s, client.EventQuery{VM: host.ID, Operation: op})
		if len(es) != 1 || cause(t, es[0]) != jit.OpPolicyUpdate {
			t.Errorf("%s events %v, want one naming the policy update", op, ops(es))
		}
	}

	// Another binding still allows the grant; the last one goes with it.
	if err := s.Admin.DeleteRoleBinding(ctx, asRequester.ID); err != nil {
		t.Fatal(err)
	}
	if g := grantByID(t, s, own.ID); g.Status != jit.GrantActive {
		t.Errorf("grant still allowed by requester-any-source: %s", g.Status)
	}
	if err := s.Admin.DeleteRoleBinding(ctx, anySource.ID); err != nil {
		t.Fatal(err)
	}
	if _, got = agentGrants(t, agent, ds.Revision); len(got) != 0 {
		t.Errorf("agent's grants after bob's last binding went: %v", got)
	}
	es := events(t, s, client.EventQuery{VM: host.ID, Operation: jit.OpGrantRevoke})
	if len(es) != 2 || cause(t, es[1]) != jit.OpRoleBindingDelete {
		t.Errorf("revoke events %v, the last naming the role binding's deletion", ops(es))
	}
	wantVerified(t, s)
}

// TestRefusalsNameWhatTheyAreAbout: a requester naming another source gets
// 403 naming the field; a reader's refused request is logged against the
// VM, which readers of its group then see.
func TestRefusalsNameWhatTheyAreAbout(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "A", "B")
	v := vm(t, s.Admin, "A", "db-1")
	hidden := vm(t, s.Admin, "B", "vault")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	carl := user(t, s, "carl", jit.RoleRequester, "A")
	dan := user(t, s, "dan", jit.RoleReader, "A")

	st, body := call(t, s, carl, "POST", "/api/v1/requests", jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: v.ID,
		Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "203.0.113.5"}}}}})
	wantError(t, st, body, http.StatusForbidden, jit.EForbidden, "virtualMachines[0].ports[0].allowedSourceAddressPrefix", "own address")

	before := len(events(t, s, client.EventQuery{Operation: jit.OpRequestRefuse}))
	st, body = call(t, s, dan, "POST", "/api/v1/requests", jit.AccessRequest{VirtualMachines: []jit.VMRequest{
		{ID: hidden.ID, Ports: []jit.PortRequest{{Number: 22}}}, {ID: v.ID, Ports: []jit.PortRequest{{Number: 22}}}}})
	wantError(t, st, body, http.StatusForbidden, jit.EForbidden, "-")
	es := events(t, s, client.EventQuery{Operation: jit.OpRequestRefuse})[before:]
	if len(es) != 1 || es[0].VMID != v.ID || es[0].Group != "A" || es[0].Actor != "dan" {
		t.Fatalf("dan's refusal logged as %+v, want one event on %s in group A (and none naming the VM dan cannot read)", es, v.ID)
	}
	if es := events(t, s, client.EventQuery{VM: v.ID, Actor: "dan", Operation: jit.OpRequestRefuse}); len(es) != 1 {
		t.Errorf("%d refusals in the log of %s, want dan's", len(es), v.Name)
	}
}

// TestAzureInitiateTargets: refusals of the Azure-compatible initiate name
// the caller's field, also when a list of sources became several ports.
func TestAzureInitiateTargets(t *testing.T) {
	t.Parallel()
	const sub = "00000000-0000-0000-0000-00000000000a"
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", sub, "--azure-location", "westeurope"}})
	group(t, s, "rg-a")
	v := vm(t, s.Admin, "rg-a", "vm1")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"), rule(3389, "TCP", "PT1H"))
	carl := user(t, s, "carl", jit.RoleRequester, "rg-a")
	base := "/subscriptions/" + sub + "/resourceGroups/rg-a/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
	st, body := call(t, s, carl, "GET", base+"?api-version=2020-01-01", nil)
	if st != http.StatusOK {
		t.Fatalf("GET the Azure policy = %d %s", st, body)
	}
	var pol struct {
		Properties struct {
			VirtualMachines []struct {
				ID string `json:"id"`
			} `json:"virtualMachines"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(body, &pol); err != nil || len(pol.Properties.VirtualMachines) != 1 {
		t.Fatalf("Azure policy %s: %v", body, err)
	}
	armID := pol.Properties.VirtualMachines[0].ID
	for _, c := range []struct {
		ports  []map[string]any
		target string
	}{
		{[]map[string]any{{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "203.0.113.5"}},
			"virtualMachines[0].ports[0].allowedSourceAddressPrefix"},
		{[]map[string]any{{"number": 22, "duration": "PT1H"}, {"number": 3389, "duration": "PT1H", "allowedSourceAddressPrefixes": []string{"127.0.0.1", "203.0.113.5"}}},
			"virtualMachines[0].ports[1].allowedSourceAddressPrefixes[1]"},
		{[]map[string]any{{"number": 22, "duration": "PT1H"}, {"number": 3389, "duration": "PT9H"}},
			"virtualMachines[0].ports[1].duration"},
	} {
		st, body := call(t, s, carl, "POST", base+"/initiate?api-version=2020-01-01",
			map[string]any{"virtualMachines": []map[string]any{{"id": armID, "ports": c.ports}}})
		if st != http.StatusForbidden && st != http.StatusBadRequest {
			t.Fatalf("initiate %v = %d %s, want a refusal", c.ports, st, body)
		}
		if e := parseError(t, body); e.Target != c.target {
			t.Errorf("initiate %v refused with target %q (%s), want %q", c.ports, e.Target, e.Message, c.target)
		}
	}
}
