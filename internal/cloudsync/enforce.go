package cloudsync

import (
	"context"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// dispatcher decides which VM is enforced when. It belongs to Run's
// goroutine; only the attempts run elsewhere, and they report back on
// done.
type dispatcher struct {
	s      *Syncer
	wg     *sync.WaitGroup
	work   map[string]*vmWork
	done   chan result
	active int
	// listAgain is when to retry listing every VM after that failed.
	listAgain time.Time
}

// vmWork is what the dispatcher knows of one VM.
type vmWork struct {
	queued   bool      // an attempt is wanted
	running  bool      // an attempt is under way
	failures int       // failed attempts in a row
	retryAt  time.Time // when to try again after a failure; zero: no retry
	last     *jit.VM   // as last read, to clean up after it when deleted
}

// result is the outcome of one attempt.
type result struct {
	id   string
	vm   *jit.VM // as read, nil when gone
	gone bool    // forget the VM: deleted (and cleaned up) or not the backend's
	err  error
}

func (d *dispatcher) get(id string) *vmWork {
	w, ok := d.work[id]
	if !ok {
		w = &vmWork{}
		d.work[id] = w
	}
	return w
}

func (d *dispatcher) queue(id string) { d.get(id).queued = true }

// queueAll queues every VM of the backend, and every VM known here that is gone.
func (d *dispatcher) queueAll(ctx context.Context) {
	vms, err := d.s.ctl.BackendVMs(ctx, d.s.backend)
	if err != nil {
		if ctx.Err() == nil {
			d.s.log.Error("cloud enforcement: list VMs", "backend", d.s.backend, "err", err)
			d.listAgain = time.Now().Add(d.s.cfg.RetryMin)
		}
		return
	}
	d.listAgain = time.Time{}
	for _, vm := range vms {
		w := d.get(vm.ID)
		w.queued, w.last = true, &vm
	}
	for _, w := range d.work {
		w.queued = true
	}
}

// start begins the queued attempts that may run now.
func (d *dispatcher) start(ctx context.Context) {
	for id, w := range d.work {
		if d.active >= d.s.cfg.Parallel {
			return
		}
		if !w.queued || w.running {
			continue
		}
		w.queued, w.running, w.retryAt = false, true, time.Time{}
		d.active++
		last, failures := w.last, w.failures
		d.wg.Go(func() {
			r := d.s.reconcile(ctx, id, last, failures)
			select {
			case d.done <- r:
			case <-ctx.Done():
			}
		})
	}
}

// finish takes in an attempt's result.
func (d *dispatcher) finish(r result) {
	d.active--
	w := d.work[r.id]
	w.running = false
	if r.vm != nil {
		w.last = r.vm
	}
	switch {
	case r.err != nil:
		w.failures++
		w.retryAt = time.Now().Add(d.backoff(w.failures))
	case r.gone && !w.queued:
		delete(d.work, r.id)
	default:
		w.failures = 0
	}
}

// backoff is the wait before retrying after n failures in a row.
func (d *dispatcher) backoff(n int) time.Duration {
	wait := d.s.cfg.RetryMin
	for i := 1; i < n && wait < d.s.cfg.RetryMax; i++ {
		wait *= 2
	}
	return min(wait, d.s.cfg.RetryMax)
}

// nextWake returns how long until the next retry is due.
func (d *dispatcher) nextWake() time.Duration {
	next := d.listAgain
	for _, w := range d.work {
		if !w.retryAt.IsZero() && !w.running && (next.IsZero() || w.retryAt.Before(next)) {
			next = w.retryAt
		}
	}
	if next.IsZero() {
		return time.Hour
	}
	return max(0, time.Until(next))
}

// due queues the retries whose time has come.
func (d *dispatcher) due(ctx context.Context) {
	now := time.Now()
	if !d.listAgain.IsZero() && !now.Before(d.listAgain) {
		d.queueAll(ctx)
	}
	for _, w := range d.work {
		if !w.retryAt.IsZero() && !now.Before(w.retryAt) {
			w.retryAt = time.Time{}
			w.queued = true
		}
	}
}

// reconcile makes the cloud hold the desired state of the VM with id: its
// lock and grants, or none of ajar's rules when it has no JIT policy, and
// records the outcome. last is the VM as read before, to clean up after
// it when it was deleted; failures counts the attempts that failed before.
func (s *Syncer) reconcile(ctx context.Context, id string, last *jit.VM, failures int) result {
	vm, st, err := s.ctl.BackendDesiredState(ctx, id)
	if jit.ErrorCode(err) == jit.ENotFound {
		if last == nil || last.Backend != s.backend {
			return result{id: id, gone: true}
		}
		// Deleted from ajar: its rules go with it.
		if err := s.p.Remove(ctx, *last); err != nil {
			s.log.Warn("cloud: remove the rules of a deleted VM", "backend", s.backend, "vm", last.Name, "group", last.Group, "err", err)
			return result{id: id, err: err}
		}
		s.log.Info("cloud: removed the rules of a deleted VM", "backend", s.backend, "vm", last.Name, "group", last.Group)
		return result{id: id, gone: true}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("cloud enforcement: read desired state", "backend", s.backend, "vm", id, "err", err)
		}
		return result{id: id, err: err}
	}
	if vm.Backend != s.backend {
		return result{id: id, gone: true}
	}
	res := result{id: id, vm: &vm}
	if len(st.Lock) == 0 && vm.Labels[control.LabelEnforcementError] == "" && vm.Report != nil && vm.Report.AppliedRevision == vm.Revision {
		return res // ajar's rules were removed at this revision already
	}
	out := control.EnforcementResult{Revision: st.Revision, Locked: len(st.Lock), Grants: len(st.Grants), Attempt: failures + 1}
	if len(st.Lock) == 0 {
		out.Removed = true
		err = s.p.Remove(ctx, vm)
	} else {
		err = s.p.Apply(ctx, vm, st)
		if jit.ErrorCode(err) == jit.ENotFound {
			// The VM (or its network interface) is gone from the cloud: leave no lock behind
			// on an address that may be given to another VM.
			if rerr := s.p.Remove(ctx, vm); rerr != nil {
				s.log.Warn("cloud: remove the rules of a VM gone from the cloud", "backend", s.backend, "vm", vm.Name, "err", rerr)
			}
		}
		if err == nil {
			sh, serr := s.p.Shadowed(ctx, vm)
			if serr != nil {
				s.log.Warn("cloud: list shadowed rules", "backend", s.backend, "vm", vm.Name, "err", serr)
				sh = control.ShadowedRules(vm)
			}
			out.Shadowed = sh
		}
	}
	if ctx.Err() != nil {
		return result{id: id, vm: &vm, err: ctx.Err()}
	}
	if err != nil {
		out.Err = s.userError(err)
		s.log.Warn("cloud enforcement failed", "backend", s.backend, "vm", vm.Name, "group", vm.Group, "revision", st.Revision, "attempt", out.Attempt, "err", err)
	} else {
		s.log.Debug("cloud enforcement applied", "backend", s.backend, "vm", vm.Name, "group", vm.Group, "revision", st.Revision, "locked", out.Locked, "grants", out.Grants)
	}
	if rerr := s.ctl.RecordEnforcement(ctx, id, out); rerr != nil && ctx.Err() == nil {
		s.log.Error("cloud enforcement: record", "backend", s.backend, "vm", vm.Name, "err", rerr)
		if err == nil {
			err = rerr // try again, so that the record is made
		}
	}
	res.err = err
	return res
}
