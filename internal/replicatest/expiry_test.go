package replicatest

import (
	"context"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/loadbench"
)

// TestExpiryExactlyOnce opens 1,000 short grants through both replicas,
// whose expirers then race to end them: each grant must expire once, with
// one grant.expire event, and the chain must verify.
func TestExpiryExactlyOnce(t *testing.T) {
	a, b := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	token, vms, err := loadbench.Setup(ctx, a.Admin, 50)
	if err != nil {
		t.Fatal(err)
	}
	const total = 1000
	start := time.Now()
	acks, failed, firstErr := load(ctx, []*client.Client{a.Client(token), b.Client(token)}, vms, 32, total, "PT3S", nil)
	t.Logf("%d grants of 3s opened in %v", len(acks), time.Since(start).Round(time.Millisecond))
	if len(acks) != total {
		t.Fatalf("%d accepted, %v failed, want %d accepted; first error: %v", len(acks), failed, total, firstErr)
	}
	opened := map[string]bool{}
	for _, k := range acks {
		for _, g := range k.req.Grants {
			opened[g.ID] = true
		}
	}
	if len(opened) != total {
		t.Fatalf("%d distinct grants opened, want %d", len(opened), total)
	}

	var left int
	if !waitFor(30*time.Second, func() bool {
		left = len(allGrants(ctx, t, a.Admin, jit.GrantActive))
		return left == 0
	}) {
		t.Fatalf("%d grants still active 30s after the load", left)
	}
	t.Logf("all expired %v after the first request", time.Since(start).Round(time.Millisecond))
	// Give a late duplicate, if any, the time to land.
	time.Sleep(500 * time.Millisecond)

	for _, g := range allGrants(ctx, t, b.Admin, "") {
		if !opened[g.ID] {
			t.Errorf("grant %s was not opened by this test", g.ID)
		} else if g.Status != jit.GrantExpired {
			t.Errorf("grant %s is %s, want expired", g.ID, g.Status)
		}
	}
	expired := detailIDs(t, eventsOf(ctx, t, b.Admin, jit.OpGrantExpire), "grant")
	for id := range checkUnique(t, "grant.expire events", expired, total) {
		if !opened[id] {
			t.Errorf("grant.expire event of grant %s, which was not opened", id)
		}
	}
	checkChain(ctx, t, "A", a.Admin)
	checkChain(ctx, t, "B", b.Admin)
}
