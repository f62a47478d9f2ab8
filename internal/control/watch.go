package control

import (
	"context"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// hub wakes the callers waiting for a VM's desired state to change.
type hub struct {
	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

func (h *hub) wait(vmID string) chan struct{} {
	ch := make(chan struct{})
	h.mu.Lock()
	h.waiters[vmID] = append(h.waiters[vmID], ch)
	h.mu.Unlock()
	return ch
}

func (h *hub) cancel(vmID string, ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.waiters[vmID]
	for i, c := range list {
		if c == ch {
			h.waiters[vmID] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(h.waiters[vmID]) == 0 {
		delete(h.waiters, vmID)
	}
}

func (h *hub) wake(vmID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vmID == store.AllVMs {
		for id, list := range h.waiters {
			for _, ch := range list {
				close(ch)
			}
			delete(h.waiters, id)
		}
		return
	}
	for _, ch := range h.waiters[vmID] {
		close(ch)
	}
	delete(h.waiters, vmID)
}

// RunWatchHub relays committed changes from the store (this server's and
// other replicas') to the callers of WatchDesiredState until ctx ends.
func (c *Control) RunWatchHub(ctx context.Context) error {
	for id := range c.store.Changes(ctx) {
		c.hub.wake(id)
	}
	return nil
}

// DesiredState returns what the VM's enforcer must make true now, to
// readers of its group and to its own agent (which may read nothing else
// of it: not its policy, users or usage).
func (c *Control) DesiredState(ctx context.Context, a *Actor, vmID string) (jit.DesiredState, error) {
	var st jit.DesiredState
	err := c.store.View(ctx, func(tx store.Tx) error {
		var vm jit.VM
		var err error
		if a != nil && a.Token.Kind == jit.TokenAgent && a.Token.VMID == vmID {
			vm, err = tx.GetVM(vmID)
		} else {
			vm, err = getVM(tx, a, vmID)
		}
		if err != nil {
			return err
		}
		st, err = desiredState(tx, vm, c.Now())
		return err
	})
	return st, err
}

func desiredState(tx store.Tx, vm jit.VM, now time.Time) (jit.DesiredState, error) {
	st := jit.DesiredState{VMID: vm.ID, Revision: vm.Revision, ServerTime: now, Lock: []jit.PortLock{}, Grants: []jit.GrantRule{}}
	pol, err := tx.GetPolicy(vm.ID)
	if jit.ErrorCode(err) == jit.ENotFound {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	st.CloseConnectionsOnExpiry = pol.CloseConnectionsOnExpiry
	for _, r := range pol.Ports {
		st.Lock = append(st.Lock, jit.PortLock{Port: r.Number, Protocol: r.Protocol})
	}
	active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
	if err != nil {
		return st, err
	}
	for _, g := range active {
		left := remaining(g.EndTime, now)
		if left <= 0 || !covered(pol, g) {
			continue
		}
		st.Grants = append(st.Grants, jit.GrantRule{ID: g.ID, Port: g.Port, Protocol: g.Protocol, Source: g.Source, EndTime: g.EndTime, RemainingSeconds: left})
	}
	return st, nil
}

// WatchDesiredState returns the VM's desired state as soon as its revision
// is past after, or, when wait runs out first, the current state
// unchanged ("no change"). Running out of wait never fails the call: a
// read already under way when it does finishes under ctx, which bounds
// the whole call (the caller's connection).
func (c *Control) WatchDesiredState(ctx context.Context, a *Actor, vmID string, after int64, wait time.Duration) (jit.DesiredState, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ch := c.hub.wait(vmID)
		st, err := c.DesiredState(ctx, a, vmID)
		if err != nil || st.Revision > after {
			c.hub.cancel(vmID, ch)
			return st, err
		}
		select {
		case <-ch:
		case <-timer.C:
			c.hub.cancel(vmID, ch)
			return st, nil
		case <-ctx.Done(): // the caller left, or the server stops
			c.hub.cancel(vmID, ch)
			return st, nil
		}
	}
}
