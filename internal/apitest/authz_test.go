package apitest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// matrix is the fixture of the authorization matrix: groups A and B, one
// user per role and a server to run the cells on.
type matrix struct {
	s     *ajardtest.Server
	other string // token of another requester in A
	n     atomic.Int64
}

// actor is a user of the matrix.
type actor struct {
	name, token string
	canRequestA bool // has a binding that lets it request in A
}

// cell is one operation of the matrix, done as a.
type cell func(t *testing.T, m *matrix, a actor) (int, []byte)

func (m *matrix) name(prefix string) string { return fmt.Sprintf("%s-%d", prefix, m.n.Add(1)) }

// freshVM registers a VM in grp with a policy on port 22 from anywhere.
func (m *matrix) freshVM(t *testing.T, grp string) jit.VM {
	v := vm(t, m.s.Admin, grp, m.name("vm"))
	policy(t, m.s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	return v
}

// ownGrant opens a grant on a fresh VM of A for a, giving a the
// requester role for the time of the request when it lacks it: taking the
// role back ends the grant (a grant lives only while its holder may
// request it), which ownGrant checks.
func (m *matrix) ownGrant(t *testing.T, a actor) jit.Grant {
	v := m.freshVM(t, "A")
	if a.canRequestA {
		return request(t, m.s.Client(a.token), v.ID, port(22, "PT10M")).Grants[0]
	}
	b, err := m.s.Admin.CreateRoleBinding(t.Context(), a.name, jit.RoleRequester, "A")
	if err != nil {
		t.Fatal(err)
	}
	g := request(t, m.s.Client(a.token), v.ID, port(22, "PT10M")).Grants[0]
	if err := m.s.Admin.DeleteRoleBinding(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	if got := grantByID(t, m.s, g.ID).Status; got != jit.GrantRevoked {
		t.Errorf("%s's grant after the role that allowed it went: %s, want revoked", a.name, got)
	}
	return g
}

func accessBody(vmID string) map[string]any {
	return map[string]any{"virtualMachines": []any{map[string]any{"id": vmID, "ports": []any{map[string]any{"number": 22, "duration": "PT10M"}}}}, "justification": "matrix"}
}

var policyBody = map[string]any{"ports": []any{map[string]any{"number": 3389, "protocol": "TCP", "allowedSourceAddressPrefixes": []string{"*"}, "maxRequestAccessDuration": "PT2H"}}}

// groupsOf returns the sorted distinct groups of a list response's values.
func groupsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var l struct {
		Value []struct {
			Group string `json:"group"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("list response %s: %v", body, err)
	}
	var gs []string
	for _, v := range l.Value {
		if !slices.Contains(gs, v.Group) {
			gs = append(gs, v.Group)
		}
	}
	slices.Sort(gs)
	return gs
}

// TestAuthorizationMatrix checks each role against each operation.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "A", "B")
	m := &matrix{s: s, other: user(t, s, "other", jit.RoleRequester, "A")}
	user(t, s, "spare")
	// Events in both groups, for the log's visibility.
	m.freshVM(t, "A")
	m.freshVM(t, "B")

	actors := []actor{
		{name: "admin", token: ajardtest.AdminToken, canRequestA: true},
		{name: "jitadmin", token: user(t, s, "jitadmin", jit.RoleJITAdmin, "A")},
		{name: "req", token: user(t, s, "req", jit.RoleRequester, "A"), canRequestA: true},
		{name: "reqany", token: user(t, s, "reqany", jit.RoleRequesterAnySource, "A"), canRequestA: true},
		{name: "readerA", token: user(t, s, "readerA", jit.RoleReader, "A")},
		{name: "readerAll", token: user(t, s, "readerAll", jit.RoleReader, jit.AllGroups)},
		{name: "nobody", token: user(t, s, "nobody")},
	}

	// Expected statuses, one column per actor in the order above.
	type row struct {
		op   string
		want [7]int
		do   cell
	}
	rows := []row{
		{"create group", [7]int{201, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/groups", map[string]any{"name": m.name("g-" + a.name)})
		}},
		{"create VM in A", [7]int{201, 201, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/vms", map[string]any{"name": m.name("new"), "group": "A"})
		}},
		{"put policy on A's VM", [7]int{200, 200, 403, 403, 403, 403, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "A")
			return call(t, m.s, a.token, "PUT", "/api/v1/vms/"+v.ID+"/policy", policyBody)
		}},
		{"put policy on B's VM", [7]int{200, 404, 404, 404, 404, 403, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "B")
			return call(t, m.s, a.token, "PUT", "/api/v1/vms/"+v.ID+"/policy", policyBody)
		}},
		{"delete policy", [7]int{204, 204, 403, 403, 403, 403, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "A")
			st, body := call(t, m.s, a.token, "DELETE", "/api/v1/vms/"+v.ID+"/policy", nil)
			_, err := m.s.Admin.GetPolicy(t.Context(), v.ID)
			if deleted := jit.ErrorCode(err) == jit.ENotFound; deleted != (st == 204) {
				t.Errorf("status %d but policy deleted = %v (%v)", st, deleted, err)
			}
			return st, body
		}},
		{"request access, own IP", [7]int{201, 403, 201, 201, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "A")
			st, body := call(t, m.s, a.token, "POST", "/api/v1/requests", accessBody(v.ID))
			gs := must[[]jit.Grant](t)(m.s.Admin.ListGrants(t.Context(), v.ID, "", ""))
			if opened := len(gs) == 1 && gs[0].User == a.name && gs[0].Source == "127.0.0.1/32"; opened != (st == 201) || len(gs) > 1 {
				t.Errorf("status %d but grants %+v", st, gs)
			}
			return st, body
		}},
		{"request access in B", [7]int{201, 403, 404, 404, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "B")
			return call(t, m.s, a.token, "POST", "/api/v1/requests", accessBody(v.ID))
		}},
		// Those who may not request hold no grant: theirs ended with the
		// role (a jit-admin, who may revoke any grant in A, is told so).
		{"revoke own grant", [7]int{200, 200, 200, 200, 403, 403, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			g := m.ownGrant(t, a)
			st, body := call(t, m.s, a.token, "POST", "/api/v1/grants/"+g.ID+"/revoke", nil)
			if got := grantByID(t, m.s, g.ID).Status; a.canRequestA && (got == jit.GrantRevoked) != (st == 200) {
				t.Errorf("status %d but grant %s", st, got)
			}
			return st, body
		}},
		{"revoke another's grant", [7]int{200, 200, 403, 403, 403, 403, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "A")
			g := request(t, m.s.Client(m.other), v.ID, port(22, "PT10M")).Grants[0]
			st, body := call(t, m.s, a.token, "POST", "/api/v1/grants/"+g.ID+"/revoke", nil)
			if got := grantByID(t, m.s, g.ID).Status; (got == jit.GrantRevoked) != (st == 200) {
				t.Errorf("status %d but grant %s", st, got)
			}
			return st, body
		}},
		{"list VMs", [7]int{200, 200, 200, 200, 200, 200, 200}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			st, body := call(t, m.s, a.token, "GET", "/api/v1/vms", nil)
			if st == 200 {
				want := map[string][]string{"admin": {"A", "B"}, "readerAll": {"A", "B"}, "nobody": nil}[a.name]
				if _, ok := map[string]bool{"admin": true, "readerAll": true, "nobody": true}[a.name]; !ok {
					want = []string{"A"}
				}
				if got := groupsOf(t, body); !slices.Equal(got, want) {
					t.Errorf("%s sees VMs of groups %v, want %v", a.name, got, want)
				}
			}
			return st, body
		}},
		{"get B's VM", [7]int{200, 404, 404, 404, 404, 200, 404}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "B")
			return call(t, m.s, a.token, "GET", "/api/v1/vms/"+v.ID, nil)
		}},
		{"list grants", [7]int{200, 200, 200, 200, 200, 200, 200}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			v := m.freshVM(t, "B")
			request(t, m.s.Admin, v.ID, port(22, "PT10M"))
			st, body := call(t, m.s, a.token, "GET", "/api/v1/grants", nil)
			if st == 200 {
				got := groupsOf(t, body)
				if sees := slices.Contains(got, "B"); sees != (a.name == "admin" || a.name == "readerAll") {
					t.Errorf("%s sees grants of groups %v", a.name, got)
				}
				if a.name == "nobody" && len(got) != 0 {
					t.Errorf("nobody sees grants of groups %v", got)
				}
			}
			return st, body
		}},
		{"read activity log", [7]int{200, 200, 200, 200, 200, 200, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			st, body := call(t, m.s, a.token, "GET", "/api/v1/activity", nil)
			if st == 200 {
				got := groupsOf(t, body)
				if all := a.name == "admin" || a.name == "readerAll"; all && !slices.Contains(got, "B") || !all && !slices.Equal(got, []string{"A"}) {
					t.Errorf("%s sees events of groups %q", a.name, got)
				}
			}
			return st, body
		}},
		{"verify", [7]int{200, 200, 200, 200, 200, 200, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			st, body := call(t, m.s, a.token, "GET", "/api/v1/activity/verify", nil)
			var v jit.Verification
			if st == 200 && (json.Unmarshal(body, &v) != nil || !v.OK) {
				t.Errorf("verify: %s", body)
			}
			return st, body
		}},
		{"download an archive", [7]int{200, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "GET", "/api/v1/activity/archive?before=2000-01-01T00:00:00Z", nil)
		}},
		{"confirm an archive", [7]int{404, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/activity/archive", map[string]any{"from": 1, "through": map[string]any{"seq": 1 << 40, "hash": strings.Repeat("0", 64)}})
		}},
		{"create user", [7]int{201, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/users", map[string]any{"name": m.name("made-by-" + a.name)})
		}},
		{"create token", [7]int{201, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/tokens", map[string]any{"user": "other", "name": "by " + a.name})
		}},
		{"create own token", [7]int{201, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/tokens", map[string]any{"user": a.name, "name": "mine"})
		}},
		{"create role binding", [7]int{201, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/rolebindings", map[string]any{"user": "spare", "role": "jit-admin", "group": "A"})
		}},
		{"grant oneself admin", [7]int{409, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/rolebindings", map[string]any{"user": a.name, "role": "admin", "group": "*"})
		}},
		{"create enrollment token", [7]int{201, 201, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "POST", "/api/v1/enrollment-tokens", map[string]any{"group": "A", "ttl": "PT10M", "uses": 1})
		}},
		{"list users", [7]int{200, 403, 403, 403, 403, 403, 403}, func(t *testing.T, m *matrix, a actor) (int, []byte) {
			return call(t, m.s, a.token, "GET", "/api/v1/users", nil)
		}},
	}

	// The actors run in parallel; each one's cells in order, since some
	// change the actor's own bindings for a moment.
	t.Run("cells", func(t *testing.T) {
		for i, a := range actors {
			t.Run(a.name, func(t *testing.T) {
				t.Parallel()
				for _, r := range rows {
					t.Run(r.op, func(t *testing.T) {
						want := r.want[i]
						st, body := r.do(t, m, a)
						switch {
						case want < 300:
							if st != want {
								t.Errorf("%s: %s = %d, want %d (allowed): %s", a.name, r.op, st, want, body)
							}
						default:
							code := map[int]string{403: jit.EForbidden, 404: jit.ENotFound, 409: jit.EConflict}[want]
							if st != want {
								t.Errorf("%s: %s = %d, want %d (%s): %s", a.name, r.op, st, want, code, body)
							} else if e := parseError(t, body); e.Code != code {
								t.Errorf("%s: %s: code %q, want %q", a.name, r.op, e.Code, code)
							}
						}
					})
				}
			})
		}
	})
	wantVerified(t, s)
}
