package loadbench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// Fleet is a set of fake agents. Each is enrolled like a real one and
// talks to ajard as ajar-agent does, through the same client with its own
// agent credential and its own HTTP/1.1 connection: it long-polls its
// VM's desired state (POST /api/v1/agent/watch), each poll carrying its
// report with the revision it received last. It touches no firewall and
// sends no events (an agent sends one per applied state; the benchmark
// measures the states' way to the agents).
type Fleet struct {
	Agents []*FakeAgent

	errs     atomic.Int64
	errMu    sync.Mutex
	firstErr error
}

// FakeAgent is one agent of a Fleet.
type FakeAgent struct {
	VMID string
	API  *client.Client
	rev  atomic.Int64 // revision of the last desired state received; -1 before
	at   atomic.Int64 // when it arrived, Unix nanoseconds
}

// Revision returns the revision of the last desired state the agent
// received and when it arrived.
func (a *FakeAgent) Revision() (int64, time.Time) {
	return a.rev.Load(), time.Unix(0, a.at.Load())
}

// Enroll enrolls n fake agents into a new group through the admin client;
// the agents' clients connect to url, pinning fingerprint when it is set.
func Enroll(ctx context.Context, admin *client.Client, url, fingerprint, group string, n int) (*Fleet, error) {
	if _, err := admin.CreateGroup(ctx, group); err != nil {
		return nil, err
	}
	opts := client.Options{Fingerprint: fingerprint, Timeout: 150 * time.Second, HTTP1: true}
	f := &Fleet{Agents: make([]*FakeAgent, n)}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for start := 0; start < n; start += 10000 {
		uses := min(n-start, 10000)
		tk, err := admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: group, Uses: uses, TTL: "PT1H"})
		if err != nil {
			return nil, err
		}
		enroller, err := client.New(url, tk.Secret, opts)
		if err != nil {
			return nil, err
		}
		end := start + uses
		next.Store(int64(start))
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= end || ctx.Err() != nil {
						return
					}
					e, err := enroller.Enroll(ctx, jit.Enrollment{Name: fmt.Sprintf("%s-%05d", group, i), Hostname: fmt.Sprintf("host-%05d", i), OS: "linux"})
					if err == nil {
						var c *client.Client
						c, err = client.New(url, e.Secret, opts)
						f.Agents[i] = &FakeAgent{VMID: e.VM.ID, API: c}
						f.Agents[i].rev.Store(-1)
					}
					if err != nil {
						select {
						case errc <- fmt.Errorf("enroll agent %d: %w", i, err):
						default:
						}
						return
					}
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errc:
			return nil, err
		default:
		}
		enroller.HTTP.CloseIdleConnections()
	}
	return f, nil
}

// Run runs every agent until ctx ends, starting them evenly over ramp
// (as agents come back after a server restart); it returns when all have
// stopped.
func (f *Fleet) Run(ctx context.Context, ramp time.Duration) {
	var wg sync.WaitGroup
	gap := ramp / time.Duration(max(1, len(f.Agents)))
	t := time.NewTicker(max(gap, time.Microsecond))
	defer t.Stop()
	for _, a := range f.Agents {
		wg.Go(func() { f.runAgent(ctx, a) })
		if gap > 0 {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	wg.Wait()
}

func (f *Fleet) runAgent(ctx context.Context, a *FakeAgent) {
	after := int64(-1)
	for ctx.Err() == nil {
		st, changed, err := a.API.Watch(ctx, after, jit.Report{AppliedRevision: max(after, 0), Hostname: "fake", OS: "linux", Enforceable: true,
			Listening: []jit.Socket{{Protocol: "TCP", Port: 22}}})
		if err != nil {
			f.fail(ctx, err)
			sleep(ctx, time.Second)
			continue
		}
		if changed && st.Revision != after {
			a.at.Store(time.Now().UnixNano())
			a.rev.Store(st.Revision)
			after = st.Revision
		}
	}
	a.API.HTTP.CloseIdleConnections()
}

func (f *Fleet) fail(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	f.errs.Add(1)
	f.errMu.Lock()
	if f.firstErr == nil {
		f.firstErr = err
	}
	f.errMu.Unlock()
}

// Errors returns how many calls of the agents failed and the first error.
func (f *Fleet) Errors() (int64, error) {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.errs.Load(), f.firstErr
}

// Revisions returns every agent's last received revision.
func (f *Fleet) Revisions() []int64 {
	out := make([]int64, len(f.Agents))
	for i, a := range f.Agents {
		out[i], _ = a.Revision()
	}
	return out
}

// WaitPast waits until every agent i has received a revision past
// before[i] and returns the latest arrival time among them.
func (f *Fleet) WaitPast(ctx context.Context, before []int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		var last time.Time
		behind := 0
		for i, a := range f.Agents {
			rev, at := a.Revision()
			if rev <= before[i] {
				behind++
				continue
			}
			if at.After(last) {
				last = at
			}
		}
		if behind == 0 {
			return last, nil
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%d of %d agents did not receive the change within %v", behind, len(f.Agents), timeout)
		}
		if err := ctx.Err(); err != nil {
			return last, err
		}
		time.Sleep(time.Millisecond)
	}
}

// Connected waits until every agent has received its first desired state.
func (f *Fleet) Connected(ctx context.Context, timeout time.Duration) error {
	before := slices.Repeat([]int64{-1}, len(f.Agents))
	_, err := f.WaitPast(ctx, before, timeout)
	if err != nil {
		return errors.New("not all agents connected: " + err.Error())
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
