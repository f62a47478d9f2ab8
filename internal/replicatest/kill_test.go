package replicatest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/loadbench"
)

// TestKillReplica kills replica B with SIGKILL in the middle of a load
// split over both replicas: every request either replica acknowledged
// must be there afterwards with its grant and events, A must carry on,
// and B must come back on the same database with a chain that verifies.
func TestKillReplica(t *testing.T) {
	a, b := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	token, vms, err := loadbench.Setup(ctx, a.Admin, 20)
	if err != nil {
		t.Fatal(err)
	}

	const total, killAfter, workers = 600, 200, 32
	var acked atomic.Int64
	kill := make(chan struct{})
	var once sync.Once
	onAck := func(ack) {
		if acked.Add(1) == killAfter {
			once.Do(func() { close(kill) })
		}
	}
	type result struct {
		acks     []ack
		failed   []int
		firstErr error
	}
	done := make(chan result)
	clients := []*client.Client{a.Client(token), b.Client(token)}
	go func() {
		acks, failed, firstErr := load(ctx, clients, vms, workers, total, "PT1H", onAck)
		done <- result{acks, failed, firstErr}
	}()
	var res result
	select {
	case <-kill:
		b.Kill()
		t.Logf("killed B after %d acknowledged requests", acked.Load())
		res = <-done
	case res = <-done:
		t.Fatalf("the load ended before %d requests were acknowledged: %d; first error: %v", killAfter, len(res.acks), res.firstErr)
	}
	byReplica := [2]int{}
	for _, k := range res.acks {
		byReplica[k.replica]++
	}
	t.Logf("acknowledged: %d by A, %d by B; failed: %d on A, %d on B (first error: %v)",
		byReplica[0], byReplica[1], res.failed[0], res.failed[1], res.firstErr)
	if res.failed[0] > 0 {
		t.Errorf("%d requests to A failed: A must carry on while B is killed", res.failed[0])
	}
	if byReplica[1] == 0 {
		t.Errorf("B acknowledged nothing before it was killed")
	}

	// Everything acknowledged is there, through the surviving replica.
	checkAcked := func(name string, c *client.Client) {
		t.Helper()
		requests := map[string]jit.Request{}
		for _, r := range allRequests(ctx, t, c) {
			requests[r.ID] = r
		}
		grants := map[string]jit.Grant{}
		for _, g := range allGrants(ctx, t, c, "") {
			grants[g.ID] = g
		}
		lost := 0
		for _, k := range res.acks {
			r, ok := requests[k.req.ID]
			if !ok {
				lost++
				if lost <= 5 {
					t.Errorf("through %s: request %s acknowledged by replica %c is missing", name, k.req.ID, "AB"[k.replica])
				}
				continue
			}
			if len(r.Grants) != len(k.req.Grants) {
				t.Errorf("through %s: request %s has %d grants, acknowledged with %d", name, r.ID, len(r.Grants), len(k.req.Grants))
			}
			for _, ag := range k.req.Grants {
				g, ok := grants[ag.ID]
				switch {
				case !ok:
					lost++
					t.Errorf("through %s: grant %s of acknowledged request %s is missing", name, ag.ID, r.ID)
				case g.Status != jit.GrantActive || g.Source != ag.Source || g.VMID != ag.VMID:
					t.Errorf("through %s: grant %s is %s %s on %s, acknowledged as active %s on %s", name, g.ID, g.Status, g.Source, g.VMID, ag.Source, ag.VMID)
				}
			}
		}
		if lost > 0 {
			t.Errorf("through %s: %d of %d acknowledged requests or grants lost", name, lost, len(res.acks))
		}
		// A request B was writing when it died is there whole or not at
		// all: one request.approve per request, one grant.open per grant.
		approved := detailIDs(t, eventsOf(ctx, t, c, jit.OpRequestApprove), "request")
		for id := range checkUnique(t, "request.approve events through "+name, approved, len(requests)) {
			if _, ok := requests[id]; !ok {
				t.Errorf("through %s: request.approve event of request %s, which is not listed", name, id)
			}
		}
		opened := detailIDs(t, eventsOf(ctx, t, c, jit.OpGrantOpen), "grant")
		for id := range checkUnique(t, "grant.open events through "+name, opened, len(grants)) {
			if _, ok := grants[id]; !ok {
				t.Errorf("through %s: grant.open event of grant %s, which is not listed", name, id)
			}
		}
		// Only the requests in flight on B when it died may be stored
		// without an acknowledgement: at most one per worker of B.
		if extra := len(requests) - len(res.acks); extra > workers/2 {
			t.Errorf("through %s: %d requests stored but not acknowledged, more than the %d in flight on B", name, extra, workers/2)
		}
		t.Logf("through %s: %d requests, %d grants stored for %d acknowledged", name, len(requests), len(grants), len(res.acks))
	}
	checkAcked("A", a.Admin)
	checkChain(ctx, t, "A", a.Admin)

	b.Restart()
	checkAcked("B", b.Admin)
	checkChain(ctx, t, "B", b.Admin)

	// Both replicas take requests again.
	more, failed, firstErr := load(ctx, clients, vms, 4, 20, "PT1H", nil)
	if failed[0]+failed[1] > 0 || len(more) != 20 {
		t.Errorf("after the restart: %d accepted, %v failed; first error: %v", len(more), failed, firstErr)
	}
	checkChain(ctx, t, "A", a.Admin)
}
