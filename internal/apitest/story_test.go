package apitest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestStory walks the life of a grant: group, VM, policy, request, grant,
// expiry by the server's own timer, the log and its verification; then
// superseding and revoking.
func TestStory(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	opsc := s.Client(user(t, s, "ops", jit.RoleJITAdmin, "prod"))
	aliceTok := user(t, s, "alice", jit.RoleRequester, "prod")
	alice := s.Client(aliceTok)

	// The subtests share one server and compare its state before and
	// after, so they run one after another.
	t.Run("expiry", func(t *testing.T) {
		ctx := t.Context()
		v := vm(t, opsc, "prod", "web-1")
		p := policy(t, opsc, v.ID, false, rule(22, "tcp", "PT1H"))
		if p.Ports[0].Protocol != jit.ProtoTCP || p.Ports[0].MaxRequestAccessDuration != "PT1H" || p.UpdatedBy != "ops" {
			t.Errorf("policy not canonical: %+v", p)
		}
		req := request(t, alice, v.ID, port(22, "PT2S"))
		g := req.Grants[0]
		if g.Status != jit.GrantActive || g.User != "alice" || g.Source != "127.0.0.1/32" || g.Protocol != jit.ProtoTCP ||
			g.EndTime.Sub(g.StartTime) != 2*time.Second || req.Address != "127.0.0.1" {
			t.Errorf("grant = %+v (request address %q)", g, req.Address)
		}
		if got := grantByID(t, s, g.ID); got.Status != jit.GrantActive {
			t.Fatalf("right after the request the grant is %s", got.Status)
		}
		st := must[jit.VMView](t)(alice.GetVM(ctx, v.ID))
		if st.ActiveGrants != 1 {
			t.Errorf("VM shows %d active grants, want 1", st.ActiveGrants)
		}

		// Nobody calls the server until well after the end time: only
		// its timer can expire the grant.
		time.Sleep(time.Until(g.EndTime) + 700*time.Millisecond)
		got := grantByID(t, s, g.ID)
		if got.Status != jit.GrantExpired || got.EndedAt == nil || !got.EndedAt.Equal(g.EndTime) || got.EndedBy != "system" {
			t.Fatalf("after the end time: status %s endedAt %v endedBy %q, want expired at %v by system", got.Status, got.EndedAt, got.EndedBy, g.EndTime)
		}

		es := events(t, s, client.EventQuery{VM: v.ID})
		want := []string{jit.OpVMCreate, jit.OpPolicyCreate, jit.OpGrantOpen, jit.OpRequestApprove, jit.OpGrantExpire}
		if !hasInOrder(ops(es), want) {
			t.Errorf("VM events %v, want %v in that order", ops(es), want)
		}
		for _, e := range es {
			if e.Operation != jit.OpGrantExpire {
				continue
			}
			var d struct {
				Grant   string    `json:"grant"`
				EndedAt time.Time `json:"endedAt"`
			}
			if err := json.Unmarshal(e.Details, &d); err != nil {
				t.Fatal(err)
			}
			if e.Actor != "system" || d.Grant != g.ID || !d.EndedAt.Equal(g.EndTime) {
				t.Errorf("grant.expire event: actor %q details %s, want system ending %s at %v", e.Actor, e.Details, g.ID, g.EndTime)
			}
		}
		wantVerified(t, s)
	})

	t.Run("supersede", func(t *testing.T) {
		v := vm(t, opsc, "prod", "web-2")
		policy(t, opsc, v.ID, false, rule(22, "TCP", "PT1H"))
		first := request(t, alice, v.ID, port(22, "PT10M")).Grants[0]
		second := request(t, alice, v.ID, port(22, "PT5M")).Grants[0]
		old := grantByID(t, s, first.ID)
		if old.Status != jit.GrantSuperseded || old.EndedAt == nil {
			t.Errorf("first grant: %s endedAt %v, want superseded", old.Status, old.EndedAt)
		}
		if now := grantByID(t, s, second.ID); now.Status != jit.GrantActive {
			t.Errorf("second grant: %s, want active", now.Status)
		}
		active := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), v.ID, jit.GrantActive, ""))
		if len(active) != 1 || active[0].ID != second.ID {
			t.Errorf("active grants %+v, want only %s", active, second.ID)
		}
		es := events(t, s, client.EventQuery{VM: v.ID, Operation: jit.OpGrantSupersede})
		if len(es) != 1 || !detailsHave(t, es[0], "grant", first.ID) {
			t.Errorf("grant.supersede events %+v, want one for %s", es, first.ID)
		}
		wantVerified(t, s)
	})

	t.Run("revoke", func(t *testing.T) {
		v := vm(t, opsc, "prod", "web-3")
		policy(t, opsc, v.ID, false, rule(22, "TCP", "PT1H"))
		g := request(t, alice, v.ID, port(22, "PT10M")).Grants[0]
		r, err := alice.Revoke(t.Context(), g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != jit.GrantRevoked || r.EndedAt == nil || r.EndedBy != "alice" || !r.EndedAt.Before(g.EndTime) {
			t.Errorf("revoked grant %+v", r)
		}
		es := events(t, s, client.EventQuery{VM: v.ID, Operation: jit.OpGrantRevoke})
		if len(es) != 1 || es[0].Actor != "alice" || !detailsHave(t, es[0], "grant", g.ID) {
			t.Errorf("grant.revoke events %+v, want one by alice for %s", es, g.ID)
		}
		// Revoking it again answers its state and changes nothing.
		before := snap(t, s)
		st, body := call(t, s, aliceTok, http.MethodPost, "/api/v1/grants/"+g.ID+"/revoke", nil)
		var again jit.Grant
		if st != http.StatusOK || json.Unmarshal(body, &again) != nil || again.Status != jit.GrantRevoked || !again.EndedAt.Equal(*r.EndedAt) {
			t.Errorf("second revoke: %d %s, want 200 with the grant as the first revoke left it", st, body)
		}
		st, body = call(t, s, aliceTok, http.MethodPost, "/api/v1/grants/no-such-grant/revoke", nil)
		wantError(t, st, body, http.StatusNotFound, jit.ENotFound, "-")
		before.unchanged(t, s, 0, "")
		wantVerified(t, s)
	})
}

// detailsHave reports whether the event's details have key = value.
func detailsHave(t *testing.T, e jit.Event, key, value string) bool {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(e.Details, &d); err != nil {
		t.Fatalf("event %d details %s: %v", e.Seq, e.Details, err)
	}
	return d[key] == value
}
