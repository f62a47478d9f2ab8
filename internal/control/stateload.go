package control

import (
	"context"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// stateLoader reads the desired states of agents' own VMs, many in one
// snapshot when many are asked for at once: a change of every VM wakes
// every agent's long poll together, and reading each state in a
// transaction of its own kept the database's readers busy for seconds.
// A caller joins the states waiting to be read; while fewer than
// loaderSlots reads run, it reads (up to loaderBatch states, its own and
// others') instead of waiting. Under light load each state is read alone,
// as before.
type stateLoader struct {
	mu      sync.Mutex
	waiting map[string][]chan stateResult
	order   []string // VM ids in waiting, oldest first
	running int
}

type stateResult struct {
	st  jit.DesiredState
	err error
}

const (
	loaderSlots = 4   // reads at once (the SQLite store has four readers)
	loaderBatch = 500 // states per read
	// loaderTimeout bounds a read made for others as well: it does not
	// end with the context of the caller that happens to make it.
	loaderTimeout = 30 * time.Second
)

// load returns the desired state of vmID (an agent's own VM, so no
// permission check).
func (l *stateLoader) load(ctx context.Context, c *Control, vmID string) (jit.DesiredState, error) {
	ch := make(chan stateResult, 1)
	l.mu.Lock()
	if l.waiting == nil {
		l.waiting = map[string][]chan stateResult{}
	}
	if len(l.waiting[vmID]) == 0 {
		l.order = append(l.order, vmID)
	}
	l.waiting[vmID] = append(l.waiting[vmID], ch)
	lead := l.running < loaderSlots
	if lead {
		l.running++
	}
	l.mu.Unlock()
	if lead {
		l.readAll(context.WithoutCancel(ctx), c)
	}
	select {
	case r := <-ch:
		return r.st, r.err
	case <-ctx.Done():
		return jit.DesiredState{}, ctx.Err()
	}
}

// readAll reads batches of waiting states until none waits.
func (l *stateLoader) readAll(ctx context.Context, c *Control) {
	for {
		l.mu.Lock()
		n := min(len(l.order), loaderBatch)
		if n == 0 {
			l.running--
			l.mu.Unlock()
			return
		}
		ids := l.order[:n:n]
		l.order = l.order[n:]
		waiters := make([][]chan stateResult, n)
		for i, id := range ids {
			waiters[i] = l.waiting[id]
			delete(l.waiting, id)
		}
		l.mu.Unlock()
		states, err := c.readStates(ctx, ids)
		for i, id := range ids {
			r := stateResult{err: err}
			if err == nil {
				st, ok := states[id]
				if !ok {
					r.err = jit.Errorf(jit.ENotFound, "VM %s not found", id)
				}
				r.st = st
			}
			for _, ch := range waiters[i] {
				ch <- r
			}
		}
	}
}

// readStates reads the desired states of the VMs in one snapshot: one
// query per table.
func (c *Control) readStates(ctx context.Context, ids []string) (map[string]jit.DesiredState, error) {
	ctx, cancel := context.WithTimeout(ctx, loaderTimeout)
	defer cancel()
	out := make(map[string]jit.DesiredState, len(ids))
	err := c.store.View(ctx, func(tx store.Tx) error {
		vms, err := tx.ListVMs(store.VMFilter{IDs: ids})
		if err != nil {
			return err
		}
		pols, err := tx.ListPolicies(store.VMFilter{IDs: ids})
		if err != nil {
			return err
		}
		byVM := make(map[string]*jit.Policy, len(pols))
		for i := range pols {
			byVM[pols[i].VMID] = &pols[i]
		}
		var grants []jit.Grant
		if len(pols) > 0 {
			if grants, err = tx.ListGrants(store.GrantFilter{VMIDs: ids, Status: jit.GrantActive}); err != nil {
				return err
			}
		}
		active := map[string][]jit.Grant{}
		for _, g := range grants {
			active[g.VMID] = append(active[g.VMID], g)
		}
		now := c.Now()
		for _, vm := range vms {
			out[vm.ID] = buildState(vm, byVM[vm.ID], active[vm.ID], now)
		}
		return nil
	})
	return out, err
}
