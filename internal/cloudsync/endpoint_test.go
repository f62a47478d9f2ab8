package cloudsync

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
)

// POST /api/v1/azure/sync runs a discovery for admins and answers its
// summary; everyone else is refused.
func TestSyncEndpoint(t *testing.T) {
	w := newWorld(t)
	discoveryWorld(w.f)
	const adminToken = "ajar_test-admin-token-0123456789"
	if _, err := w.ctl.Bootstrap(ctx(), adminToken); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.CreateUser(ctx(), admin, jit.NewUser{Name: "rita"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.CreateRoleBinding(ctx(), admin, jit.RoleBinding{User: "rita", Role: jit.RoleReader, Group: jit.AllGroups}); err != nil {
		t.Fatal(err)
	}
	reader, err := w.ctl.CreateToken(ctx(), admin, jit.NewToken{User: "rita", Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	api := server.New(w.ctl, w.log, nil)
	api.HandleCloudSync(jit.BackendAzure, w.syncer)
	srv := httptest.NewServer(api)
	defer srv.Close()
	var postTo func(path, token string) *http.Response

	post := func(token string) *http.Response { return postTo("/api/v1/azure/sync", token) }
	postTo = func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := post(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %s", resp.Status)
	}
	resp := post(reader.Secret)
	var eb httpio.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.StatusCode != http.StatusForbidden || eb.Error.Code != jit.EForbidden {
		t.Errorf("a reader: %s %+v %v", resp.Status, eb, err)
	}
	resp = post(adminToken)
	var sum control.CloudSyncSummary
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("an admin: %s %v", resp.Status, err)
	}
	if sum.Backend != jit.BackendAzure || sum.Discovered != 5 || len(sum.Created) != 5 {
		t.Errorf("summary = %+v", sum)
	}

	// The route of every cloud: azure's answers the same; a cloud the
	// server does not run is not found.
	resp = postTo("/api/v1/clouds/azure/sync", adminToken)
	sum = control.CloudSyncSummary{}
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil || resp.StatusCode != http.StatusOK || sum.Discovered != 5 || len(sum.Created) != 0 {
		t.Errorf("clouds/azure/sync: %s %+v %v", resp.Status, sum, err)
	}
	resp = postTo("/api/v1/clouds/aws/sync", adminToken)
	eb = httpio.ErrorBody{}
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.StatusCode != http.StatusNotFound || eb.Error.Code != jit.ENotFound {
		t.Errorf("clouds/aws/sync without aws: %s %+v %v", resp.Status, eb, err)
	}
}
