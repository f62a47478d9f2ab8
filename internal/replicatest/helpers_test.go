package replicatest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
)

// startReplicas starts two ajard replicas, A and B, on one fresh database.
func startReplicas(t *testing.T) (a, b *ajardtest.Server) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	args := []string{"--log-level", "warn"}
	a = ajardtest.Start(t, ajardtest.Options{DB: dsn, Args: args})
	b = ajardtest.Start(t, ajardtest.Options{DB: dsn, Args: args})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica A log:\n%s", tail(a.Log.String(), 4000))
			t.Logf("replica B log:\n%s", tail(b.Log.String(), 4000))
		}
	})
	return a, b
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// pageLimit is the largest page the list endpoints serve.
const pageLimit = 10000

// allGrants lists the grants with the given status (empty for all), up to
// pageLimit; the client's ListGrants uses the server's default of 1,000,
// which could hide a surplus.
func allGrants(ctx context.Context, t *testing.T, c *client.Client, status string) []jit.Grant {
	t.Helper()
	path := fmt.Sprintf("/api/v1/grants?limit=%d", pageLimit)
	if status != "" {
		path += "&status=" + status
	}
	var l struct {
		Value []jit.Grant `json:"value"`
	}
	if err := c.Do(ctx, http.MethodGet, path, nil, &l); err != nil {
		t.Fatalf("list grants: %v", err)
	}
	if len(l.Value) >= pageLimit {
		t.Fatalf("list grants: %d, more than one page", len(l.Value))
	}
	return l.Value
}

// allRequests lists the requests, up to pageLimit.
func allRequests(ctx context.Context, t *testing.T, c *client.Client) []jit.Request {
	t.Helper()
	var l struct {
		Value []jit.Request `json:"value"`
	}
	if err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/requests?limit=%d", pageLimit), nil, &l); err != nil {
		t.Fatalf("list requests: %v", err)
	}
	if len(l.Value) >= pageLimit {
		t.Fatalf("list requests: %d, more than one page", len(l.Value))
	}
	return l.Value
}

// eventsOf returns every event of one operation, paging by sequence number.
func eventsOf(ctx context.Context, t *testing.T, c *client.Client, op string) []jit.Event {
	t.Helper()
	var all []jit.Event
	after := int64(0)
	for range 100 { // bounded: 100 pages of 1,000
		page, err := c.ListEvents(ctx, client.EventQuery{Operation: op, After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("list %s events: %v", op, err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
		after = page[len(page)-1].Seq
	}
	t.Fatalf("list %s events: more than 100 pages", op)
	return nil
}

// detailIDs returns the value of key in each event's details, and fails
// on an event without one.
func detailIDs(t *testing.T, events []jit.Event, key string) []string {
	t.Helper()
	ids := make([]string, 0, len(events))
	for _, e := range events {
		var d map[string]any
		if err := json.Unmarshal(e.Details, &d); err != nil {
			t.Fatalf("event %d (%s): details: %v", e.Seq, e.Operation, err)
		}
		id, _ := d[key].(string)
		if id == "" {
			t.Fatalf("event %d (%s): no %q in details %s", e.Seq, e.Operation, key, e.Details)
		}
		ids = append(ids, id)
	}
	return ids
}

// checkUnique fails when ids holds one twice, or not exactly want ids.
func checkUnique(t *testing.T, what string, ids []string, want int) map[string]bool {
	t.Helper()
	seen := make(map[string]bool, len(ids))
	dups := 0
	for _, id := range ids {
		if seen[id] {
			dups++
			if dups <= 5 {
				t.Errorf("%s: %s appears twice", what, id)
			}
		}
		seen[id] = true
	}
	if len(ids) != want || dups > 0 {
		t.Errorf("%s: %d (%d distinct, %d duplicates), want %d", what, len(ids), len(seen), dups, want)
	}
	return seen
}

// checkChain verifies the activity log's hash chain through c.
func checkChain(ctx context.Context, t *testing.T, name string, c *client.Client) {
	t.Helper()
	v, err := c.Verify(ctx)
	if err != nil || !v.OK {
		t.Errorf("verify through %s: %+v %v", name, v, err)
		return
	}
	t.Logf("chain verified through %s: %d events", name, v.Events)
}

// source is the i-th distinct source address, from 2001:db8::/32.
func source(i int) string { return fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff) }

// ack is one acknowledged (201) access request.
type ack struct {
	replica int
	req     jit.Request
}

// load submits total access requests of duration on port 22, an equal
// share through each client (one per replica) from workers spread evenly
// over them, to the VMs in turn, each from its own source. onAck runs for
// each 201 (from many goroutines); load returns the acknowledged requests
// and the failures per client.
func load(ctx context.Context, clients []*client.Client, vmIDs []string, workers, total int, duration string, onAck func(ack)) (acks []ack, failed []int, firstErr error) {
	var mu sync.Mutex
	failed = make([]int, len(clients))
	next := make([]int, len(clients)) // per client, so that a dead replica's share cannot eat the others'
	take := func(r int) int {
		mu.Lock()
		defer mu.Unlock()
		i := next[r]*len(clients) + r
		next[r]++
		return i
	}
	var wg sync.WaitGroup
	for w := range workers {
		r := w % len(clients)
		c := clients[r]
		wg.Go(func() {
			for {
				i := take(r)
				if i >= total || ctx.Err() != nil {
					return
				}
				req := jit.AccessRequest{Justification: "replicatest", VirtualMachines: []jit.VMRequest{{ID: vmIDs[i%len(vmIDs)],
					Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: source(i), Duration: duration}}}}}
				got, err := c.RequestAccess(ctx, req)
				mu.Lock()
				if err != nil {
					failed[r]++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					acks = append(acks, ack{replica: r, req: got})
				}
				mu.Unlock()
				if err == nil && onAck != nil {
					onAck(ack{replica: r, req: got})
				}
			}
		})
	}
	wg.Wait()
	return acks, failed, firstErr
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
