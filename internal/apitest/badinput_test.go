package apitest

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// badCase is one bad input: who sends what, the error it must get, and
// whether it is a refused access request (which logs one request.refuse
// event; anything else must change nothing at all).
type badCase struct {
	name         string
	token        string
	method, path string
	body         any
	status       int
	code, target string
	msg          []string
	refusal      bool
}

// TestBadInput sends every kind of bad input and checks that each gets a
// 4xx naming the problem and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "A", "B")
	admin := ajardtest.AdminToken
	req := user(t, s, "req", jit.RoleRequester, "A")
	reqAny := user(t, s, "reqany", jit.RoleRequesterAnySource, "A")
	jitA := user(t, s, "jitadmin", jit.RoleJITAdmin, "A")

	pol := vm(t, s.Admin, "A", "pol")
	policy(t, s.Admin, pol.ID, false,
		rule(22, "TCP", "PT1H"),
		rule(2200, "TCP", "PT1H", "198.51.100.0/24"))
	just := vm(t, s.Admin, "A", "just")
	policy(t, s.Admin, just.ID, true, rule(22, "TCP", "PT1H"))
	noPol := vm(t, s.Admin, "A", "nopol")
	vmB := vm(t, s.Admin, "B", "b1")
	policy(t, s.Admin, vmB.ID, false, rule(22, "TCP", "PT1H"))

	polPath := "/api/v1/vms/" + pol.ID + "/policy"
	// badRule is a policy body whose one rule is a good rule changed by kv.
	badRule := func(kv map[string]any) map[string]any {
		r := map[string]any{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefixes": []string{"*"}, "maxRequestAccessDuration": "PT1H"}
		maps.Copy(r, kv)
		return map[string]any{"ports": []any{r}}
	}
	// access is an access request body for one port of one VM.
	access := func(vmID string, p map[string]any) map[string]any {
		return map[string]any{"virtualMachines": []any{map[string]any{"id": vmID, "ports": []any{p}}}, "justification": "testing"}
	}
	const pf = "virtualMachines[0].ports[0]"
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	soon := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	huge := []byte(`{"name":"` + strings.Repeat("a", 2<<20) + `","group":"A"}`)

	cases := []badCase{
		// Bodies.
		{name: "malformed JSON", token: admin, method: "POST", path: "/api/v1/vms", body: []byte(`{"name": "x",`),
			status: 400, code: jit.EInvalid, target: "", msg: []string{"malformed JSON"}},
		{name: "malformed JSON policy", token: admin, method: "PUT", path: polPath, body: []byte(`{"ports": [}`),
			status: 400, code: jit.EInvalid, target: "", msg: []string{"malformed JSON"}},
		{name: "trailing data", token: admin, method: "POST", path: "/api/v1/vms", body: []byte(`{"name":"x","group":"A"} {}`),
			status: 400, code: jit.EInvalid, target: "", msg: []string{"after the JSON value"}},
		{name: "empty body", token: admin, method: "POST", path: "/api/v1/vms", body: []byte(``),
			status: 400, code: jit.EInvalid, target: "", msg: []string{"empty"}},
		{name: "unknown field", token: admin, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "x", "group": "A", "colour": "red"},
			status: 400, code: jit.EInvalid, target: "colour", msg: []string{"unknown field", "colour"}},
		{name: "unknown field in rule", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"maxDuration": "PT1H"}),
			status: 400, code: jit.EInvalid, target: "maxDuration", msg: []string{"unknown field", "maxDuration"}},
		{name: "wrong type", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"number": "22"}),
			status: 400, code: jit.EInvalid, target: "ports.number", msg: []string{"number"}},
		{name: "body over 1 MiB", token: admin, method: "POST", path: "/api/v1/vms", body: huge,
			status: 413, code: jit.ETooLarge, target: "", msg: []string{"1048576"}},
		{name: "NUL in a body string", token: req, method: "POST", path: "/api/v1/requests",
			body:   []byte(`{"virtualMachines":[{"id":"` + pol.ID + `","ports":[{"number":22}]}],"justification":"fix\u0000it"}`),
			status: 400, code: jit.EInvalid, target: "", msg: []string{"NUL"}},

		// Path and query values no store keeps.
		{name: "invalid UTF-8 grant id", token: req, method: "POST", path: "/api/v1/grants/%FF/revoke",
			status: 400, code: jit.EInvalid, target: "", msg: []string{"path", "UTF-8"}},
		{name: "NUL in a VM id", token: admin, method: "GET", path: "/api/v1/vms/a%00b",
			status: 400, code: jit.EInvalid, target: "", msg: []string{"path", "NUL"}},
		{name: "invalid UTF-8 query value", token: admin, method: "GET", path: "/api/v1/activity?actor=%FF",
			status: 400, code: jit.EInvalid, target: "actor", msg: []string{"actor", "UTF-8"}},

		// Policies.
		{name: "port 0", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"number": 0}),
			status: 400, code: jit.EInvalid, target: "ports[0].number", msg: []string{"between 1 and 65535", "got 0"}},
		{name: "port 65536", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"number": 65536}),
			status: 400, code: jit.EInvalid, target: "ports[0].number", msg: []string{"between 1 and 65535", "65536"}},
		{name: "protocol ICMP", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"protocol": "ICMP"}),
			status: 400, code: jit.EInvalid, target: "ports[0].protocol", msg: []string{"TCP, UDP or *", "ICMP"}},
		{name: "CIDR /33", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"allowedSourceAddressPrefixes": []string{"10.0.0.0/33"}}),
			status: 400, code: jit.EInvalid, target: "ports[0].allowedSourceAddressPrefixes[0]", msg: []string{"10.0.0.0/33"}},
		{name: "CIDR banana", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"allowedSourceAddressPrefixes": []string{"10.0.0.0/8", "banana"}}),
			status: 400, code: jit.EInvalid, target: "ports[0].allowedSourceAddressPrefixes[1]", msg: []string{"banana"}},
		{name: "max PT4M", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"maxRequestAccessDuration": "PT4M"}),
			status: 400, code: jit.EInvalid, target: "ports[0].maxRequestAccessDuration", msg: []string{"PT5M", "PT24H", "PT4M"}},
		{name: "max PT25H", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"maxRequestAccessDuration": "PT25H"}),
			status: 400, code: jit.EInvalid, target: "ports[0].maxRequestAccessDuration", msg: []string{"PT5M", "PT24H", "PT25H"}},
		{name: "max 3h", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"maxRequestAccessDuration": "3h"}),
			status: 400, code: jit.EInvalid, target: "ports[0].maxRequestAccessDuration", msg: []string{"ISO 8601", "3h"}},
		{name: "max PTXH", token: admin, method: "PUT", path: polPath, body: badRule(map[string]any{"maxRequestAccessDuration": "PTXH"}),
			status: 400, code: jit.EInvalid, target: "ports[0].maxRequestAccessDuration", msg: []string{"ISO 8601", "PTXH"}},
		{name: "no ports", token: admin, method: "PUT", path: polPath, body: map[string]any{"ports": []any{}},
			status: 400, code: jit.EInvalid, target: "ports", msg: []string{"at least one port"}},

		// Access requests.
		{name: "port not in policy", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 2222}),
			status: 400, code: jit.EInvalid, target: pf + ".number", msg: []string{"port 2222", "not in the JIT policy", "pol"}, refusal: true},
		{name: "protocol mismatch", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "protocol": "UDP"}),
			status: 400, code: jit.EInvalid, target: pf + ".protocol", msg: []string{"UDP", "does not match", "TCP"}, refusal: true},
		{name: "source outside allowed prefixes", token: reqAny, method: "POST", path: "/api/v1/requests",
			body:   access(pol.ID, map[string]any{"number": 2200, "allowedSourceAddressPrefix": "203.0.113.5"}),
			status: 400, code: jit.EInvalid, target: pf + ".allowedSourceAddressPrefix", msg: []string{"203.0.113.5", "outside", "198.51.100.0/24"}, refusal: true},
		{name: "duration over maximum", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "duration": "PT2H"}),
			status: 400, code: jit.EInvalid, target: pf + ".duration", msg: []string{"PT2H", "exceeds the maximum", "PT1H"}, refusal: true},
		{name: "end time over maximum", token: req, method: "POST", path: "/api/v1/requests",
			body:   access(pol.ID, map[string]any{"number": 22, "endTimeUtc": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)}),
			status: 400, code: jit.EInvalid, target: pf + ".endTimeUtc", msg: []string{"maximum", "PT1H"}, refusal: true},
		{name: "duration PT0S", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "duration": "PT0S"}),
			status: 400, code: jit.EInvalid, target: pf + ".duration", msg: []string{"positive", "PT0S"}, refusal: true},
		{name: "duration 3h", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "duration": "3h"}),
			status: 400, code: jit.EInvalid, target: pf + ".duration", msg: []string{"ISO 8601", "3h"}, refusal: true},
		{name: "end time in the past", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "endTimeUtc": past}),
			status: 400, code: jit.EInvalid, target: pf + ".endTimeUtc", msg: []string{"in the past", past}, refusal: true},
		{name: "end time malformed", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22, "endTimeUtc": "tomorrow"}),
			status: 400, code: jit.EInvalid, target: pf + ".endTimeUtc", msg: []string{"RFC 3339", "tomorrow"}, refusal: true},
		{name: "duration and end time", token: req, method: "POST", path: "/api/v1/requests",
			body:   access(pol.ID, map[string]any{"number": 22, "duration": "PT10M", "endTimeUtc": soon}),
			status: 400, code: jit.EInvalid, target: pf + ".duration", msg: []string{"duration", "endTimeUtc", "not both"}, refusal: true},
		{name: "port 0 requested", token: req, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 0}),
			status: 400, code: jit.EInvalid, target: pf + ".number", msg: []string{"between 1 and 65535"}, refusal: true},
		{name: "missing justification", token: req, method: "POST", path: "/api/v1/requests",
			body:   map[string]any{"virtualMachines": []any{map[string]any{"id": just.ID, "ports": []any{map[string]any{"number": 22}}}}, "justification": "  "},
			status: 400, code: jit.EInvalid, target: "justification", msg: []string{"requires a justification", "just"}, refusal: true},
		{name: "unknown VM", token: req, method: "POST", path: "/api/v1/requests", body: access("no-such-vm", map[string]any{"number": 22}),
			status: 404, code: jit.ENotFound, target: "virtualMachines[0].id", msg: []string{"no-such-vm"}, refusal: true},
		{name: "no VMs", token: req, method: "POST", path: "/api/v1/requests", body: map[string]any{"virtualMachines": []any{}},
			status: 400, code: jit.EInvalid, target: "virtualMachines", msg: []string{"at least one VM"}, refusal: true},
		{name: "VM without policy", token: req, method: "POST", path: "/api/v1/requests", body: access(noPol.ID, map[string]any{"number": 22}),
			status: 400, code: jit.EInvalid, target: "virtualMachines[0].id", msg: []string{"nopol", "no JIT policy"}, refusal: true},
		{name: "other source without requester-any-source", token: req, method: "POST", path: "/api/v1/requests",
			body:   access(pol.ID, map[string]any{"number": 22, "allowedSourceAddressPrefix": "10.1.2.3"}),
			status: 403, code: jit.EForbidden, target: "-", msg: []string{"own address", "10.1.2.3", "requester-any-source"}, refusal: true},
		{name: "requester outside its groups", token: req, method: "POST", path: "/api/v1/requests", body: access(vmB.ID, map[string]any{"number": 22}),
			status: 404, code: jit.ENotFound, target: "virtualMachines[0].id", msg: []string{vmB.ID, "not found"}, refusal: true},
		{name: "jit-admin cannot request", token: jitA, method: "POST", path: "/api/v1/requests", body: access(pol.ID, map[string]any{"number": 22}),
			status: 403, code: jit.EForbidden, target: "-", msg: []string{"jitadmin", "may not request"}, refusal: true},

		// VMs and groups.
		{name: "unknown group", token: admin, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "x", "group": "nope"},
			status: 404, code: jit.ENotFound, target: "group", msg: []string{"group nope"}},
		{name: "duplicate VM name", token: admin, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "pol", "group": "A"},
			status: 409, code: jit.EConflict, target: "name", msg: []string{"pol", "already exists", "group A"}},
		{name: "bad VM name", token: admin, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "-bad name", "group": "A"},
			status: 400, code: jit.EInvalid, target: "name", msg: []string{"-bad name", "not a valid name"}},
		{name: "bad VM address", token: admin, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "x", "group": "A", "addresses": []string{"10.0.0.0/24"}},
			status: 400, code: jit.EInvalid, target: "addresses[0]", msg: []string{"10.0.0.0/24", "not an IP address"}},
		{name: "duplicate group", token: admin, method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "A"},
			status: 409, code: jit.EConflict, target: "-", msg: []string{"A"}},

		// Roles outside their groups.
		{name: "jit-admin policy on another group's VM", token: jitA, method: "PUT", path: "/api/v1/vms/" + vmB.ID + "/policy",
			body:   badRule(nil),
			status: 404, code: jit.ENotFound, target: "-", msg: []string{vmB.ID, "not found"}},
		{name: "jit-admin deletes another group's policy", token: jitA, method: "DELETE", path: "/api/v1/vms/" + vmB.ID + "/policy",
			status: 404, code: jit.ENotFound, target: "-", msg: []string{vmB.ID, "not found"}},
		{name: "jit-admin VM in another group", token: jitA, method: "POST", path: "/api/v1/vms", body: map[string]any{"name": "x", "group": "B"},
			status: 403, code: jit.EForbidden, target: "-", msg: []string{"jitadmin", "group B"}},
		{name: "requester policy in its own group", token: req, method: "PUT", path: polPath, body: badRule(nil),
			status: 403, code: jit.EForbidden, target: "-", msg: []string{"req", "group A"}},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snap(t, s)
			st, body := call(t, s, c.token, c.method, c.path, c.body)
			wantError(t, st, body, c.status, c.code, c.target, c.msg...)
			if !c.refusal {
				before.unchanged(t, s, 0, "")
				return
			}
			added := before.unchanged(t, s, 1, jit.OpRequestRefuse)
			if c.target != "-" && c.target != "" && !detailsHave(t, added[0], "target", c.target) {
				t.Errorf("request.refuse event details %s do not name target %s", added[0].Details, c.target)
			}
		})
	}
	wantVerified(t, s)
	if gs := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), "", "", "")); len(gs) != 0 {
		t.Errorf("bad input opened grants: %+v", gs)
	}
}
