package control

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Heartbeats and presence. An agent sends its report with every long poll
// (AgentWatch; agents of the previous version POST it every 30 s, Report),
// and most reports only say "still here" or "I applied revision N".
// Writing each would cost a synced write per agent per poll, and one per
// agent after every change (10,000 agents: 10,000 writes competing with
// the reads of their new states), so this server keeps the newest report
// of every agent in memory and RunPresence writes, every flushEvery and
// many in one transaction:
//   - the reports whose applied revision moved (lists show it within about
//     a second);
//   - the time of the agents seen since their stored report is touchAfter
//     old. An agent whose long poll is pending here is seen now: a poll
//     ends when its connection does (the agent closed it, or TCP keep-alive
//     found the peer dead), so a pending poll is a live agent.
//
// A report that changes what the host observes (its sockets, whether it
// can enforce), the first this server gets from an agent, and one after a
// silence (logged as agent.connect) are written at once.
//
// Offline detection (MarkSilentAgents, on any replica) reads the stored
// times: a live agent's is never much more than touchAfter old, well
// inside jit.AgentOfflineAfter; an agent gone is marked offline once its
// last sign of life here is AgentOfflineAfter old.

// flushEvery is how often kept reports are written.
const flushEvery = time.Second

// touchAfter is how old the stored time of a live agent may grow before it
// is written again: 80 s, leaving 40 s of jit.AgentOfflineAfter for
// flushes that fail.
const touchAfter = jit.AgentOfflineAfter * 2 / 3

// flushBatch bounds the reports one flush transaction writes, so that a
// flush holds the writer only briefly.
const flushBatch = 256

// heartbeats holds, per VM, the report this server stored last, the newest
// report received and the long polls pending. The zero value is ready.
type heartbeats struct {
	mu     sync.Mutex
	agents map[string]*beat
}

type beat struct {
	agent  *Actor
	last   jit.Report // the newest report received (its Time: when)
	stored jit.Report // the report this server stored last (zero Time: none)
	polls  int        // long polls pending on this server
}

func (h *heartbeats) get(vmID string) *beat {
	if h.agents == nil {
		h.agents = map[string]*beat{}
	}
	b := h.agents[vmID]
	if b == nil {
		b = &beat{}
		h.agents[vmID] = b
	}
	return b
}

// keep records r as vmID's newest report and reports whether it may wait
// for a flush: false when it must be written at once (the first report
// this server gets from the agent, a change of what the host observes, a
// return after a silence).
func (h *heartbeats) keep(vmID string, a *Actor, r jit.Report) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.get(vmID)
	b.agent, b.last = a, r
	return !b.stored.Time.IsZero() && r.Time.Sub(b.stored.Time) <= jit.AgentOfflineAfter && sameObservations(b.stored, r)
}

// wrote records that r is now vmID's stored report.
func (h *heartbeats) wrote(vmID string, r jit.Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.get(vmID)
	if r.Time.After(b.stored.Time) {
		b.stored = r
	}
}

func (h *heartbeats) forget(vmID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.agents, vmID)
}

// poll counts a long poll of vmID's agent pending until done is called.
func (h *heartbeats) poll(vmID string, now func() time.Time) (done func()) {
	h.mu.Lock()
	h.get(vmID).polls++
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		b := h.get(vmID)
		b.polls--
		b.last.Time = now() // seen until now
	}
}

// due returns the reports to write now: those that say something the
// stored one does not, and those whose agent was seen touchAfter or more
// after its stored time. It drops agents gone from this server for long.
func (h *heartbeats) due(now time.Time) map[string]keptReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]keptReport{}
	for id, b := range h.agents {
		if b.last.Time.IsZero() {
			continue
		}
		r := b.last
		if b.polls > 0 {
			r.Time = now
		}
		changed := b.stored.Time.IsZero() || !sameReport(b.stored, r)
		switch {
		case changed || r.Time.Sub(b.stored.Time) >= touchAfter:
			out[id] = keptReport{r, b.agent}
		case b.polls == 0 && now.Sub(r.Time) > jit.AgentOfflineAfter:
			delete(h.agents, id) // gone (or moved to another server)
		}
	}
	return out
}

type keptReport struct {
	report jit.Report
	agent  *Actor
}

// sameObservations reports whether a and b say the same about the host
// (the applied revision and the time aside).
func sameObservations(a, b jit.Report) bool {
	return a.SameObservations(b) && !a.Disconnected && !b.Disconnected
}

func sameReport(a, b jit.Report) bool {
	return a.AppliedRevision == b.AppliedRevision && sameObservations(a, b)
}

// noteReport keeps r, vmID's agent's report received now, for the next
// flush, or writes it at once when it must be (see keep).
func (c *Control) noteReport(ctx context.Context, a *Actor, vmID string, r jit.Report) error {
	if c.beats.keep(vmID, a, r) {
		return nil
	}
	err := c.store.Update(ctx, func(tx store.Tx) error {
		_, err := c.storeReport(tx, a, vmID, &r, false)
		return err
	})
	if err == nil {
		c.beats.wrote(vmID, r)
	}
	return err
}

// storeReport writes r as the VM's report and logs agent.connect when the
// agent was unknown, marked offline or silent for longer than
// AgentOfflineAfter. With ifNewer it leaves a newer stored report (from
// another replica) alone and reports false.
func (c *Control) storeReport(tx store.Tx, a *Actor, vmID string, r *jit.Report, ifNewer bool) (bool, error) {
	vm, err := tx.GetVM(vmID)
	if err != nil {
		return false, err
	}
	if ifNewer && vm.Report != nil && vm.Report.Time.After(r.Time) {
		return false, nil
	}
	if err := tx.SetReport(vmID, r); err != nil {
		return false, err
	}
	if vm.Report == nil || vm.Report.Disconnected || r.Time.Sub(vm.Report.Time) > jit.AgentOfflineAfter {
		return true, tx.AppendEvent(c.event(a, jit.OpAgentConnect, jit.OutcomeSuccess, &vm, map[string]any{"hostname": r.Hostname, "appliedRevision": r.AppliedRevision}))
	}
	return true, nil
}

// FlushReports writes the reports due (see heartbeats.due), at most
// flushBatch per transaction, and returns how many it wrote.
func (c *Control) FlushReports(ctx context.Context) (int, error) {
	kept := c.beats.due(c.Now())
	ids := slices.Sorted(maps.Keys(kept))
	n := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), flushBatch)]
		var wrote, gone []string
		err := c.store.Update(ctx, func(tx store.Tx) error {
			wrote, gone = wrote[:0], gone[:0]
			for _, id := range chunk {
				k := kept[id]
				ok, err := c.storeReport(tx, k.agent, id, &k.report, true)
				if jit.ErrorCode(err) == jit.ENotFound {
					gone = append(gone, id)
					continue
				}
				if err != nil {
					return err
				}
				if ok {
					wrote = append(wrote, id)
				}
			}
			return nil
		})
		if err != nil {
			return n, err // due again at the next flush
		}
		// A newer report from another replica counts as written too:
		// this server need not write an older one again.
		for _, id := range chunk {
			c.beats.wrote(id, kept[id].report)
		}
		for _, id := range gone {
			c.beats.forget(id)
		}
		n += len(wrote)
		ids = ids[len(chunk):]
	}
	return n, nil
}

// RunPresence writes the reports kept in memory every flushEvery and
// logs agent.disconnect for every agent silent for longer than
// jit.AgentOfflineAfter, once per silence, every `every`, until ctx ends.
// At the end it writes the kept reports once more.
func (c *Control) RunPresence(ctx context.Context, every time.Duration) error {
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	mark := time.NewTicker(every)
	defer mark.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := c.FlushReports(fctx); err != nil {
				c.log.Error("write agents' reports", "err", err)
			}
			return nil
		case <-flush.C:
			if _, err := c.FlushReports(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("write agents' reports", "err", err)
			}
		case <-mark.C:
			if _, err := c.MarkSilentAgents(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("mark silent agents", "err", err)
			}
		}
	}
}
