package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// keyed sends an access request with an Idempotency-Key header.
func keyed(t *testing.T, s *ajardtest.Server, token, key string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/api/v1/requests", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// TestIdempotencyKey checks that a retried access request with the same
// Idempotency-Key opens nothing more and answers the same request, also
// after a restart; that the key is the user's own; and that the same key
// with another body is refused, naming the key.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	alice := user(t, s, "alice", jit.RoleRequester, "prod")
	bob := user(t, s, "bob", jit.RoleRequester, "prod")
	v := vm(t, s.Admin, "prod", "db-7")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"), rule(3389, "TCP", "PT1H"))
	body := jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: v.ID, Ports: []jit.PortRequest{port(22, "PT10M")}}}, Justification: "INC-1"}

	decode := func(st int, b []byte) jit.Request {
		t.Helper()
		if st != http.StatusCreated {
			t.Fatalf("status %d: %s", st, b)
		}
		var r jit.Request
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := decode(keyed(t, s, alice, "req-0001", body))
	again := decode(keyed(t, s, alice, "req-0001", body))
	if again.ID != first.ID || len(again.Grants) != 1 || again.Grants[0].ID != first.Grants[0].ID {
		t.Errorf("retry answered request %s (grants %+v), want %s (grants %+v)", again.ID, again.Grants, first.ID, first.Grants)
	}
	s.Kill()
	s.Restart()
	after := decode(keyed(t, s, alice, "req-0001", body))
	if after.ID != first.ID {
		t.Errorf("retry after a restart answered request %s, want %s", after.ID, first.ID)
	}
	if gs := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), v.ID, "", "")); len(gs) != 1 {
		t.Errorf("three sends of one key opened %d grants, want 1: %+v", len(gs), gs)
	}
	if n := len(events(t, s, client.EventQuery{Operation: jit.OpGrantOpen})); n != 1 {
		t.Errorf("%d grant.open events for one key, want 1", n)
	}

	// Another body with the same key is refused and opens nothing.
	other := body
	other.VirtualMachines = []jit.VMRequest{{ID: v.ID, Ports: []jit.PortRequest{port(3389, "PT10M")}}}
	st, b := keyed(t, s, alice, "req-0001", other)
	wantError(t, st, b, http.StatusConflict, string(jit.EConflict), "Idempotency-Key", "req-0001", "different request")
	// The key is alice's: bob's request with it is his own.
	if r := decode(keyed(t, s, bob, "req-0001", body)); r.ID == first.ID || r.User != "bob" {
		t.Errorf("bob's request with alice's key: %+v", r)
	}
	st, b = keyed(t, s, alice, "with space", body)
	wantError(t, st, b, http.StatusBadRequest, string(jit.EInvalid), "Idempotency-Key", "visible ASCII")
	if gs := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), v.ID, jit.GrantActive, "")); len(gs) != 2 {
		t.Errorf("active grants %d, want 2 (alice's and bob's port 22)", len(gs))
	}
}

// TestRevokeTwice checks that revoking an ended grant reports how it
// ended instead of failing, and changes nothing.
func TestRevokeTwice(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	alice := user(t, s, "alice", jit.RoleRequester, "prod")
	v := vm(t, s.Admin, "prod", "db-7")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	g := request(t, s.Client(alice), v.ID, port(22, "PT10M")).Grants[0]
	for i := range 2 {
		st, b := call(t, s, alice, "POST", "/api/v1/grants/"+g.ID+"/revoke", nil)
		var got jit.Grant
		if st != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Status != jit.GrantRevoked || got.EndedBy != "alice" {
			t.Fatalf("revoke %d: %d %s, want 200 with the grant revoked by alice", i+1, st, b)
		}
	}
	if n := len(events(t, s, client.EventQuery{Operation: jit.OpGrantRevoke})); n != 1 {
		t.Errorf("%d grant.revoke events after revoking twice, want 1", n)
	}
}

// TestOwnTokens checks that a user who is no admin sees and revokes
// their own API tokens, and nobody else's.
func TestOwnTokens(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	alice := user(t, s, "alice", jit.RoleRequester, "prod")
	bob := user(t, s, "bob", jit.RoleRequester, "prod")
	spare := must[jit.CreatedToken](t)(s.Admin.CreateToken(t.Context(), jit.NewToken{User: "alice", Name: "spare"}))
	bobs := must[jit.CreatedToken](t)(s.Admin.CreateToken(t.Context(), jit.NewToken{User: "bob", Name: "bob's"}))
	st, b := call(t, s, alice, "GET", "/api/v1/tokens?user=alice", nil)
	var list struct{ Value []jit.Token }
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Value) != 2 {
		t.Fatalf("alice listing her tokens: %d %s, want 200 with 2", st, b)
	}
	for _, path := range []string{"/api/v1/tokens?user=bob", "/api/v1/tokens"} {
		if st, _ := call(t, s, alice, "GET", path, nil); st != http.StatusForbidden {
			t.Errorf("alice GET %s: %d, want 403", path, st)
		}
	}
	if st, b := call(t, s, alice, "DELETE", "/api/v1/tokens/"+bobs.ID, nil); st != http.StatusForbidden {
		t.Errorf("alice revoking bob's token: %d %s, want 403", st, b)
	}
	if st, b := call(t, s, alice, "DELETE", "/api/v1/tokens/"+spare.ID, nil); st/100 != 2 {
		t.Errorf("alice revoking her own token: %d %s", st, b)
	}
	if st, _ := call(t, s, bob, "GET", "/api/v1/tokens?user=bob", nil); st != http.StatusOK {
		t.Errorf("bob's token stopped working: %d", st)
	}
}
