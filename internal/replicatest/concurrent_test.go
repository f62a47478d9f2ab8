package replicatest

import (
	"context"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/loadbench"
)

// TestConcurrentRequestsAcrossReplicas submits 1,000 concurrent access
// requests split over both replicas and checks that each left exactly one
// grant, one request.approve and one grant.open event, and that the
// activity log is still one chain.
func TestConcurrentRequestsAcrossReplicas(t *testing.T) {
	a, b := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	token, vms, err := loadbench.Setup(ctx, a.Admin, 50)
	if err != nil {
		t.Fatal(err)
	}
	const total = 1000
	res := loadbench.Run(ctx, []*client.Client{a.Client(token), b.Client(token)}, vms, 32, total)
	t.Logf("load: %v", res)
	if res.Failed > 0 || res.Accepted != total {
		t.Fatalf("%d accepted, %d failed, want %d accepted; first error: %v", res.Accepted, res.Failed, total, res.FirstError)
	}

	active := allGrants(ctx, t, b.Admin, jit.GrantActive)
	ids := make([]string, len(active))
	for i, g := range active {
		ids[i] = g.ID
	}
	grants := checkUnique(t, "active grants", ids, total)
	reqs := allRequests(ctx, t, b.Admin)
	rids := make([]string, len(reqs))
	for i, r := range reqs {
		rids[i] = r.ID
	}
	requests := checkUnique(t, "requests", rids, total)

	approved := detailIDs(t, eventsOf(ctx, t, a.Admin, jit.OpRequestApprove), "request")
	for id := range checkUnique(t, "request.approve events", approved, total) {
		if !requests[id] {
			t.Errorf("request.approve event of request %s, which is not listed", id)
		}
	}
	opened := detailIDs(t, eventsOf(ctx, t, a.Admin, jit.OpGrantOpen), "grant")
	for id := range checkUnique(t, "grant.open events", opened, total) {
		if !grants[id] {
			t.Errorf("grant.open event of grant %s, which is not active", id)
		}
	}
	checkChain(ctx, t, "A", a.Admin)
	checkChain(ctx, t, "B", b.Admin)
}
