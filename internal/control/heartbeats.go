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

// Heartbeats. An agent reports every 30 s, and most reports only say
// "still here". Writing each would cost a synced write per agent every
// 30 s (10,000 agents: 333 a second), so a report that repeats what this
// server last stored for its VM is kept in memory, and RunPresence writes
// the kept ones together on every tick (FlushReports). A report with
// anything new (what the host listens on, whether it can enforce, the
// revision it applied, a return after a silence) is still written at
// once, with its agent.connect event.
//
// Offline detection (MarkSilentAgents, on any replica) reads the stored
// times, which trail a live agent's last report by at most one tick: with
// 30 s heartbeats and 30 s ticks a live agent's stored time is never much
// older than a minute, well inside jit.AgentOfflineAfter.

// keepFor bounds how long heartbeats are kept in memory for a VM without
// a report stored: past it a report is written at once, so that flushes
// that keep failing cannot hide a live agent.
const keepFor = jit.AgentOfflineAfter / 2

// flushBatch bounds the heartbeats one flush transaction writes, so that
// a flush holds the writer only briefly.
const flushBatch = 256

// heartbeats holds, per VM, the report this server stored last and a
// newer one that only moved the time. The zero value is ready.
type heartbeats struct {
	mu     sync.Mutex
	stored map[string]jit.Report
	kept   map[string]keptReport
}

type keptReport struct {
	report jit.Report
	agent  *Actor
}

// keep remembers r for the next flush when it says nothing new since the
// report stored for vmID, and reports whether it did.
func (h *heartbeats) keep(vmID string, a *Actor, r jit.Report) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.stored[vmID]
	if !ok || r.Time.Sub(s.Time) > keepFor || !sameObservations(s, r) {
		return false
	}
	if h.kept == nil {
		h.kept = map[string]keptReport{}
	}
	h.kept[vmID] = keptReport{r, a}
	return true
}

// wrote records that r is now vmID's stored report.
func (h *heartbeats) wrote(vmID string, r jit.Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stored == nil {
		h.stored = map[string]jit.Report{}
	}
	h.stored[vmID] = r
	if k, ok := h.kept[vmID]; ok && !k.report.Time.After(r.Time) {
		delete(h.kept, vmID)
	}
}

func (h *heartbeats) forget(vmID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.stored, vmID)
	delete(h.kept, vmID)
}

// take hands over the kept reports.
func (h *heartbeats) take() map[string]keptReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.kept
	h.kept = nil
	return k
}

// giveBack returns reports a flush could not write, unless newer ones
// arrived meanwhile.
func (h *heartbeats) giveBack(ids []string, k map[string]keptReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kept == nil {
		h.kept = map[string]keptReport{}
	}
	for _, id := range ids {
		if _, newer := h.kept[id]; !newer {
			h.kept[id] = k[id]
		}
	}
}

func sameObservations(a, b jit.Report) bool {
	return a.AppliedRevision == b.AppliedRevision && a.Hostname == b.Hostname && a.OS == b.OS &&
		a.Enforceable == b.Enforceable && a.Reason == b.Reason && !a.Disconnected && !b.Disconnected &&
		slices.Equal(a.Listening, b.Listening) && slices.Equal(a.Exposed, b.Exposed)
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

// FlushReports writes the heartbeats kept in memory, at most flushBatch
// per transaction, and returns how many it wrote.
func (c *Control) FlushReports(ctx context.Context) (int, error) {
	kept := c.beats.take()
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
			c.beats.giveBack(ids, kept)
			return n, err
		}
		for _, id := range wrote {
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

// RunPresence, every tick until ctx ends, writes the heartbeats kept in
// memory and then logs agent.disconnect for every agent silent for longer
// than jit.AgentOfflineAfter, once per silence. At the end it writes the
// kept heartbeats once more.
func (c *Control) RunPresence(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := c.FlushReports(fctx); err != nil {
				c.log.Error("write agents' heartbeats", "err", err)
			}
			return nil
		case <-t.C:
		}
		if _, err := c.FlushReports(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("write agents' heartbeats", "err", err)
		}
		if _, err := c.MarkSilentAgents(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("mark silent agents", "err", err)
		}
	}
}
