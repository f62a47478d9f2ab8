// Package loadbench drives ajard with concurrent access requests over HTTP
// and measures accepted requests per second and latency percentiles. The
// control plane's throughput benchmarks (SQLite, PostgreSQL with one and
// two replicas) use it.
package loadbench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// Result is what one run measured.
type Result struct {
	Accepted      int
	Failed        int
	FirstError    error
	Elapsed       time.Duration
	P50, P95, P99 time.Duration
}

// PerSecond is accepted requests per second.
func (r Result) PerSecond() float64 { return float64(r.Accepted) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%d accepted, %d failed in %v: %.0f req/s, p50 %v, p95 %v, p99 %v",
		r.Accepted, r.Failed, r.Elapsed.Round(time.Millisecond), r.PerSecond(), r.P50, r.P95, r.P99)
}

// Setup creates a group, vms VMs with a policy on port 22 and a user with
// requester-any-source, through the admin client, and returns the user's
// token and the VM ids.
func Setup(ctx context.Context, admin *client.Client, vms int) (string, []string, error) {
	if _, err := admin.CreateGroup(ctx, "bench"); err != nil {
		return "", nil, err
	}
	var ids []string
	for i := range vms {
		vm, err := admin.CreateVM(ctx, jit.NewVM{Name: fmt.Sprintf("bench-%03d", i), Group: "bench", OS: "linux"})
		if err != nil {
			return "", nil, err
		}
		if _, err := admin.PutPolicy(ctx, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}}); err != nil {
			return "", nil, err
		}
		ids = append(ids, vm.ID)
	}
	if _, err := admin.CreateUser(ctx, jit.NewUser{Name: "loadbench"}); err != nil {
		return "", nil, err
	}
	if _, err := admin.CreateRoleBinding(ctx, "loadbench", jit.RoleRequesterAnySource, "bench"); err != nil {
		return "", nil, err
	}
	tk, err := admin.CreateToken(ctx, jit.NewToken{User: "loadbench", Name: "loadbench"})
	return tk.Secret, ids, err
}

// Run submits total access requests from concurrency workers, spreading
// them over the clients (one per server replica) and the VMs; each request
// opens one grant for its own source address (from 2001:db8::/32, never
// contacted: it is data), so none supersedes another.
func Run(ctx context.Context, clients []*client.Client, vmIDs []string, concurrency, total int) Result {
	return drive(ctx, clients, concurrency, total, func(c *client.Client, i int) error {
		req := jit.AccessRequest{Justification: "load", VirtualMachines: []jit.VMRequest{{ID: vmIDs[i%len(vmIDs)],
			Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff), Duration: "PT1H"}}}}}
		_, err := c.RequestAccess(ctx, req)
		return err
	})
}

// RunPolicies makes total JIT policy updates (PUT of a VM's policy, as an
// admin; clients must be admins') from concurrency workers, spread over
// the VMs, each changing the port's maximum duration so that every update
// is a change the VM's agent must hear of.
func RunPolicies(ctx context.Context, clients []*client.Client, vmIDs []string, concurrency, total int) Result {
	return drive(ctx, clients, concurrency, total, func(c *client.Client, i int) error {
		p := jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"},
			MaxRequestAccessDuration: fmt.Sprintf("PT%dM", 60+i%120)}}}
		_, err := c.PutPolicy(ctx, vmIDs[i%len(vmIDs)], p)
		return err
	})
}

// drive calls op total times from concurrency workers, the i-th call with
// clients[worker % len(clients)], and measures.
func drive(ctx context.Context, clients []*client.Client, concurrency, total int, op func(c *client.Client, i int) error) Result {
	var next atomic.Int64
	lat := make([]time.Duration, total)
	var mu sync.Mutex
	var res Result
	start := time.Now()
	var wg sync.WaitGroup
	for w := range concurrency {
		c := clients[w%len(clients)]
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(c, i)
				lat[i] = time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstError == nil {
						res.FirstError = err
					}
				} else {
					res.Accepted++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	res.P50, res.P95, res.P99 = pct(0.50), pct(0.95), pct(0.99)
	return res
}

// CPUTime returns the processor time (user and system) that process pid
// has used so far, from /proc/PID/stat (Linux; times in USER_HZ, 100 a
// second). Divided by the requests served, it is a cost that the
// machine's other load moves less than requests per second (it still
// grows with contention: smaller batches, more switching), so compare
// runs taken back to back.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
