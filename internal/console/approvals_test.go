package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestApprovalQueue: a request from the console under an approval rule
// waits; the approver sees it in the queue, cannot deny it without a
// reason, approves it, and the grant opens; the requester sees the
// decision on their requests page.
func TestApprovalQueue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.s.Admin
	if _, err := a.PutPolicy(ctx, f.web.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP"}}, Approval: &jit.Approval{Required: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUser(ctx, jit.NewUser{Name: "avery", Password: "avery-password-123"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateRoleBinding(ctx, "avery", jit.RoleApprover, "prod"); err != nil {
		t.Fatal(err)
	}
	rachel := newHTTPUser(t, f.s.URL)
	rachel.signIn("rachel", requesterPassword)
	if st, loc, body := rachel.post("/machines/"+f.web.ID+"/request", url.Values{"port": {"22/TCP"}, "source": {"my-ip"}, "duration": {"PT5M"}, "justification": {"INC-9"}}); st != http.StatusSeeOther || loc != "/requests?done=pending" {
		t.Fatalf("request: %d %q\n%s", st, loc, body)
	}
	if gs, err := a.ListGrants(ctx, f.web.ID, jit.GrantActive, ""); err != nil || len(gs) != 0 {
		t.Fatalf("grants before approval: %+v, %v", gs, err)
	}
	if _, _, body := rachel.get("/requests?done=pending"); !strings.Contains(body, "waits for approval") || !strings.Contains(body, "pending until") {
		t.Errorf("rachel's requests page after asking:\n%s", body)
	}
	avery := newHTTPUser(t, f.s.URL)
	avery.signIn("avery", "avery-password-123")
	st, _, body := avery.get("/requests")
	if st != http.StatusOK || !strings.Contains(body, `id="queue"`) || !strings.Contains(body, "INC-9") || !strings.Contains(body, "0 of 1") {
		t.Fatalf("avery's queue: %d\n%s", st, body)
	}
	if !strings.Contains(body, f.web.Name+" port 22 for PT5M") || strings.Contains(body, f.web.ID+" port") {
		t.Errorf("avery's queue does not name the VM %s:\n%s", f.web.Name, body)
	}
	pending, err := a.ListRequests(ctx, "rachel")
	if err != nil || len(pending) != 1 || pending[0].Status != jit.RequestPending {
		t.Fatalf("rachel's requests: %+v, %v", pending, err)
	}
	id := pending[0].ID
	if st, _, _ := avery.post("/requests/"+id+"/deny", url.Values{"reason": {""}}); st != http.StatusBadRequest {
		t.Errorf("deny without a reason: %d, want 400", st)
	}
	if st, _, _ := rachel.post("/requests/"+id+"/approve", nil); st != http.StatusForbidden {
		t.Errorf("approval of one's own request: %d, want 403", st)
	}
	if st, loc, body := avery.post("/requests/"+id+"/approve", url.Values{"reason": {"on call"}}); st != http.StatusSeeOther || loc != "/requests?done=approved" {
		t.Fatalf("approve: %d %q\n%s", st, loc, body)
	}
	if gs, err := a.ListGrants(ctx, f.web.ID, jit.GrantActive, ""); err != nil || len(gs) != 1 || gs[0].User != "rachel" {
		t.Errorf("grants after approval: %+v, %v", gs, err)
	}
	if _, _, body := rachel.get("/requests"); !strings.Contains(body, "approved") || !strings.Contains(body, "avery approved: on call") {
		t.Errorf("rachel's requests page:\n%s", body)
	}
	if _, _, body := avery.get("/requests"); !strings.Contains(body, `id="queue-empty"`) {
		t.Errorf("avery's queue after the decision:\n%s", body)
	}
}
