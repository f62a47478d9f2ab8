package control

import (
	"context"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// hub wakes the callers waiting for a VM's desired state to change, and
// keeps the state its agent read last until the VM's next change, so that
// an agent's long poll that finds nothing new costs no database read.
type hub struct {
	mu      sync.Mutex
	waiters map[string][]*waiter
	states  map[string]jit.DesiredState
}

// waiter is woken by closing ch, or, when ch is nil, by calling fn.
type waiter struct {
	ch    chan struct{}
	fn    func()
	woken bool
}

// wait registers a waiter for vmID's next change and returns the state
// kept for it, if any.
func (h *hub) wait(vmID string) (*waiter, jit.DesiredState, bool) {
	w := &waiter{ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiters[vmID] = append(h.waiters[vmID], w)
	st, ok := h.states[vmID]
	return w, st, ok
}

// call registers fn, which must not block, to be called at vmID's next
// change.
func (h *hub) call(vmID string, fn func()) *waiter {
	w := &waiter{fn: fn}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiters[vmID] = append(h.waiters[vmID], w)
	return w
}

// keep keeps st, read after w was registered, as vmID's state, unless a
// change came since (then st may be older than the change).
func (h *hub) keep(vmID string, w *waiter, st jit.DesiredState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.woken {
		return
	}
	if h.states == nil {
		h.states = map[string]jit.DesiredState{}
	}
	h.states[vmID] = st
}

func (h *hub) cancel(vmID string, w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.waiters[vmID]
	for i, c := range list {
		if c == w {
			h.waiters[vmID] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(h.waiters[vmID]) == 0 {
		delete(h.waiters, vmID)
	}
}

func (w *waiter) wake() {
	w.woken = true
	if w.ch != nil {
		close(w.ch)
	} else {
		w.fn()
	}
}

func (h *hub) wake(vmID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vmID == store.AllVMs {
		for id, list := range h.waiters {
			for _, w := range list {
				w.wake()
			}
			delete(h.waiters, id)
		}
		clear(h.states)
		return
	}
	for _, w := range h.waiters[vmID] {
		w.wake()
	}
	delete(h.waiters, vmID)
	delete(h.states, vmID)
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
	pol, err := tx.GetPolicy(vm.ID)
	if jit.ErrorCode(err) == jit.ENotFound {
		return buildState(vm, nil, nil, now), nil
	}
	if err != nil {
		return jit.DesiredState{}, err
	}
	active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
	if err != nil {
		return jit.DesiredState{}, err
	}
	return buildState(vm, &pol, active, now), nil
}

// buildState is the desired state of vm under its policy (nil: none) with
// its active grants.
func buildState(vm jit.VM, pol *jit.Policy, active []jit.Grant, now time.Time) jit.DesiredState {
	st := jit.DesiredState{VMID: vm.ID, Revision: vm.Revision, ServerTime: now, Lock: []jit.PortLock{}, Grants: []jit.GrantRule{}}
	if pol == nil {
		return st
	}
	st.CloseConnectionsOnExpiry = pol.CloseConnectionsOnExpiry
	for _, r := range pol.Ports {
		st.Lock = append(st.Lock, jit.PortLock{Port: r.Number, Protocol: r.Protocol})
	}
	for _, g := range active {
		left := remaining(g.EndTime, now)
		if left <= 0 || !covered(*pol, g) {
			continue
		}
		st.Grants = append(st.Grants, jit.GrantRule{ID: g.ID, Port: g.Port, Protocol: g.Protocol, Source: g.Source, EndTime: g.EndTime, RemainingSeconds: left})
	}
	return st
}

// WatchDesiredState returns the VM's desired state as soon as its revision
// is past after, or, when wait runs out first, the current state
// unchanged ("no change"). Running out of wait never fails the call: a
// read already under way when it does finishes under ctx, which bounds
// the whole call (the caller's connection, the server's life). An agent
// watching its own VM is answered from the state kept since its last read
// while the VM has not changed.
func (c *Control) WatchDesiredState(ctx context.Context, a *Actor, vmID string, after int64, wait time.Duration) (jit.DesiredState, error) {
	own := a != nil && a.Token.Kind == jit.TokenAgent && a.Token.VMID == vmID
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		w, st, kept := c.hub.wait(vmID)
		var err error
		switch {
		case kept && own:
			st = stateAt(st, c.Now())
		case own:
			// Agents woken together (a change of many VMs) read
			// their states together.
			st, err = c.agentStates.load(ctx, c, vmID)
			if err == nil {
				c.hub.keep(vmID, w, st)
			}
		default:
			st, err = c.DesiredState(ctx, a, vmID)
		}
		if err != nil || st.Revision > after {
			c.hub.cancel(vmID, w)
			return st, err
		}
		select {
		case <-w.ch:
		case <-timer.C:
			c.hub.cancel(vmID, w)
			return st, nil
		case <-ctx.Done(): // the caller left, or the server stops
			c.hub.cancel(vmID, w)
			return st, nil
		case <-c.draining:
			c.hub.cancel(vmID, w)
			return st, nil
		}
	}
}

// Drain makes every WatchDesiredState under way and to come answer at
// once with the state it has, as if its wait had run out: a server that is
// stopping answers its agents' long polls rather than cut them, so they
// reconnect (to another replica, or to this one restarted) without an
// error.
func (c *Control) Drain() {
	c.drainOnce.Do(func() {
		close(c.draining)
		c.hub.wake(store.AllVMs) // parked polls (AgentPoll.OnChange) too
	})
}

// Draining is closed once Drain is called: other long-lived answers
// (streams) end on it too, so that a stopping server need not wait its
// whole shutdown timeout for them.
func (c *Control) Draining() <-chan struct{} { return c.draining }

// stateAt is st as the server would produce it at now: its grants with
// the time they have left, those that ended dropped.
func stateAt(st jit.DesiredState, now time.Time) jit.DesiredState {
	grants := make([]jit.GrantRule, 0, len(st.Grants))
	for _, g := range st.Grants {
		if g.RemainingSeconds = remaining(g.EndTime, now); g.RemainingSeconds > 0 {
			grants = append(grants, g)
		}
	}
	st.Grants, st.ServerTime = grants, now
	return st
}
