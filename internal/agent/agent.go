// Package agent is the ajar host agent's reconcile loop: it applies the
// cached desired state at start, before the server is reachable, then
// watches the server for its VM's desired state (a long poll that answers
// the moment it changes and carries what the agent observes on its host),
// applies each one to the host firewall, repairs drift within seconds,
// cuts connections at expiry when the policy asks, and sends its events.
// All its requests take turns on one HTTP/1.1 connection.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// Firewall is what the agent needs of the host's enforcer (nft.Firewall).
type Firewall interface {
	Apply(ctx context.Context, vm jit.VM, st jit.DesiredState) error
	Remove(ctx context.Context, vm jit.VM) error
	Check(ctx context.Context, st jit.DesiredState) (drift bool, reason string, err error)
	Works() error
	KillConnections(ctx context.Context, g jit.GrantRule) error
}

// Agent runs on one enrolled host.
type Agent struct {
	Dir      string
	Config   Config
	API      *client.Client
	Firewall Firewall
	Log      *slog.Logger
	// ProcRoot is where /proc is ("/proc" unless testing).
	ProcRoot string
	// DriftInterval is how often the table is checked against the state.
	DriftInterval time.Duration
	// ObserveInterval is how often the agent looks at what its host
	// listens on and whether it can enforce; a change is sent at once.
	ObserveInterval time.Duration

	applyMu sync.Mutex // one apply (or check and repair) at a time
	mu      sync.Mutex // guards the fields below
	cur     held
	have    bool
	applied int64
	killed  map[string]bool // grants whose connections were cut
	sent    jit.Report      // the report the pending poll carries
	events  chan jit.AgentEvent
	// wake ends the pending poll, so that the next one sends what is new
	// (events, observations) at once.
	wake chan struct{}
}

// Run applies the cached state and then keeps the host in line with the
// server until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.DriftInterval == 0 {
		a.DriftInterval = time.Second
	}
	if a.ObserveInterval == 0 {
		a.ObserveInterval = 30 * time.Second
	}
	if a.ProcRoot == "" {
		a.ProcRoot = "/proc"
	}
	a.events = make(chan jit.AgentEvent, 256)
	a.wake = make(chan struct{}, 1)
	a.killed = map[string]bool{}

	h, ok, err := loadCache(a.Dir)
	if err != nil {
		a.Log.Error("cached desired state unreadable; waiting for the server", "err", err)
	}
	if ok {
		// Apply before the first contact with the server: the lock holds
		// and cached grants keep only the time they have left.
		if err := a.apply(ctx, h, "cache"); err != nil {
			a.Log.Error("apply cached desired state", "err", err)
		} else {
			a.Log.Info("applied cached desired state", "revision", h.State.Revision, "grants", len(h.at(time.Now()).Grants))
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() { a.watch(ctx) })
	wg.Go(func() { a.guard(ctx) })
	wg.Go(func() { a.observe(ctx) })
	wg.Wait()
	return nil
}

// apply makes h the firewall's state, caches it, and cuts the connections
// of grants that went away when the policy asks for it.
func (a *Agent) apply(ctx context.Context, h held, why string) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	return a.applyLocked(ctx, h, why)
}

func (a *Agent) applyLocked(ctx context.Context, h held, why string) error {
	now := time.Now()
	st := h.at(now)
	// A change someone made to the table since the last check would vanish
	// under this apply without a trace: look first. While nothing has
	// committed to nftables since, that is one small netlink request.
	a.mu.Lock()
	cur, have := a.cur, a.have
	a.mu.Unlock()
	drift := ""
	if have && why != "repair" {
		if d, reason, err := a.Firewall.Check(ctx, cur.at(now)); err != nil {
			a.Log.Error("check firewall", "err", err)
		} else if d {
			drift = reason
			a.Log.Warn("firewall drift detected; repairing", "reason", reason)
			a.event(jit.OpDriftDetect, jit.OutcomeSuccess, map[string]any{"reason": reason, "revision": cur.State.Revision})
		}
	}
	if err := a.Firewall.Apply(ctx, jit.VM{ID: a.Config.VMID}, st); err != nil {
		a.event(jit.OpEnforceFail, jit.OutcomeFailure, map[string]any{"revision": st.Revision, "error": err.Error(), "source": why})
		return err
	}
	if drift != "" {
		a.event(jit.OpDriftRepair, jit.OutcomeSuccess, map[string]any{"reason": drift, "revision": st.Revision})
	}
	a.mu.Lock()
	prev, hadPrev := a.cur, a.have
	a.cur, a.have, a.applied = h, true, st.Revision
	a.mu.Unlock()
	if err := writeFile(a.Dir, cacheFile, h); err != nil {
		a.Log.Error("cache desired state", "err", err)
	}
	if hadPrev && prev.State.CloseConnectionsOnExpiry {
		for _, g := range prev.State.Grants {
			if _, still := h.Deadlines[g.ID]; !still {
				a.kill(ctx, g)
			}
		}
	}
	if why == "server" {
		a.event(jit.OpEnforceApply, jit.OutcomeSuccess, map[string]any{"revision": st.Revision, "locked": len(st.Lock), "grants": len(st.Grants)})
	}
	return nil
}

func (a *Agent) kill(ctx context.Context, g jit.GrantRule) {
	a.mu.Lock()
	done := a.killed[g.ID]
	a.killed[g.ID] = true
	a.mu.Unlock()
	if done {
		return
	}
	if err := a.Firewall.KillConnections(ctx, g); err != nil {
		a.Log.Error("cut connections of ended grant", "grant", g.ID, "err", err)
	}
}

// watch long-polls the server for new desired states, each poll carrying
// the agent's report; before each it sends the queued events.
func (a *Agent) watch(ctx context.Context) {
	after := int64(-1)
	var retry backoff
	var unsent []jit.AgentEvent
	for ctx.Err() == nil {
		select {
		case <-a.wake: // what it would wake for is sent now
		default:
		}
		unsent = a.sendEvents(ctx, unsent)
		r := a.report()
		a.mu.Lock()
		a.sent = r
		a.mu.Unlock()
		st, changed, err := a.poll(ctx, after, r)
		received := time.Now()
		if errors.Is(err, errWoken) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := retry.next(err)
			if serverTooOld(err) {
				a.Log.Error("the server does not know this agent's long poll (POST /api/v1/agent/watch): upgrade ajard before its agents; keeping the current state", "retry", wait)
				sleep(ctx, wait)
				continue
			}
			if code := jit.ErrorCode(err); code == jit.EUnauthorized || code == jit.ENotFound {
				a.closeGrants(ctx)
			}
			a.Log.Warn("cannot reach the server; keeping the current state", "err", err, "retry", wait)
			sleep(ctx, wait)
			continue
		}
		retry = backoff{}
		if !changed {
			continue
		}
		a.mu.Lock()
		same := a.have && after >= 0 && st.Revision == a.cur.State.Revision
		a.mu.Unlock()
		if !same {
			if err := a.apply(ctx, hold(st, received), "server"); err != nil {
				a.Log.Error("apply desired state", "revision", st.Revision, "err", err)
				sleep(ctx, time.Second)
				continue
			}
			a.Log.Debug("applied desired state", "revision", st.Revision, "grants", len(st.Grants))
		}
		after = st.Revision
	}
}

// serverTooOld reports whether err is the answer of an ajard older than
// this agent to its long poll: a route it does not have, not a VM it does
// not know (which closes the VM's grants).
func serverTooOld(err error) bool {
	return jit.ErrorCode(err) == jit.ENotFound && strings.HasPrefix(jit.ErrorMessage(err), "no such API route")
}

// errWoken ends a poll that something new (an event, a change on the
// host) interrupts.
var errWoken = errors.New("woken to send something new")

// poll is one long poll, ended early by a wake-up. Ending it closes its
// connection (HTTP/1.1 cannot take back a request under way); that is
// rare: drift, a failed apply, a service starting or stopping on the host.
func (a *Agent) poll(ctx context.Context, after int64, r jit.Report) (jit.DesiredState, bool, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	defer close(done)
	wg.Go(func() {
		select {
		case <-a.wake:
			cancel(errWoken)
		case <-done:
		}
	})
	st, changed, err := a.API.Watch(pctx, after, r)
	if err != nil && context.Cause(pctx) == errWoken && ctx.Err() == nil {
		err = errWoken
	}
	return st, changed, err
}

func (a *Agent) wakeUp() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// closeGrants applies the current state without its grants, keeping the
// lock: the server no longer knows this agent's VM or credential (the VM
// was deleted from ajar, which ended its grants), so nothing it granted
// may stay open.
func (a *Agent) closeGrants(ctx context.Context) {
	a.mu.Lock()
	h, open := a.cur, a.have && len(a.cur.State.Grants) > 0
	a.mu.Unlock()
	if !open {
		return
	}
	h.State.Grants, h.Deadlines = []jit.GrantRule{}, map[string]time.Time{}
	if err := a.apply(ctx, h, "credential refused"); err != nil {
		a.Log.Error("close grants", "err", err)
		return
	}
	a.Log.Warn("the server no longer knows this agent (VM deleted from ajar?): grants closed, the lock stays")
}

// guard checks the table against the state every DriftInterval, repairs
// drift, and cuts connections of grants that just expired.
func (a *Agent) guard(ctx context.Context) {
	t := time.NewTicker(a.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.guardOnce(ctx)
	}
}

// guardOnce checks the firewall against the state applied last and repairs
// it, holding applyMu so that a newer state cannot be applied in between
// (and then be overwritten by a stale repair).
func (a *Agent) guardOnce(ctx context.Context) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	h, have := a.cur, a.have
	a.mu.Unlock()
	if !have {
		return
	}
	now := time.Now()
	if h.State.CloseConnectionsOnExpiry {
		var ended []jit.GrantRule
		a.mu.Lock()
		for _, g := range h.State.Grants {
			if !now.Before(h.Deadlines[g.ID]) && !a.killed[g.ID] {
				ended = append(ended, g)
			}
		}
		a.mu.Unlock()
		if len(ended) > 0 {
			// The kernel may keep an ended grant's element for up to half
			// a second (whole-second timeouts), and a packet arriving then
			// would bring the cut connection back: take it out first.
			if err := a.Firewall.Apply(ctx, jit.VM{ID: a.Config.VMID}, h.at(now)); err != nil {
				a.Log.Error("apply before cutting connections of ended grants", "err", err)
			}
			for _, g := range ended {
				a.kill(ctx, g)
			}
		}
	}
	drift, reason, err := a.Firewall.Check(ctx, h.at(now))
	if err != nil {
		a.Log.Error("check firewall", "err", err)
		return
	}
	if !drift {
		return
	}
	a.Log.Warn("firewall drift detected; repairing", "reason", reason)
	a.event(jit.OpDriftDetect, jit.OutcomeSuccess, map[string]any{"reason": reason, "revision": h.State.Revision})
	if err := a.applyLocked(ctx, h, "repair"); err != nil {
		a.Log.Error("repair drift", "err", err)
		return
	}
	a.event(jit.OpDriftRepair, jit.OutcomeSuccess, map[string]any{"reason": reason, "revision": h.State.Revision})
}

// observe looks at the host every ObserveInterval and wakes the pending
// poll when what it observes changed since the poll's report.
func (a *Agent) observe(ctx context.Context) {
	t := time.NewTicker(a.ObserveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := a.report()
		a.mu.Lock()
		same := r.SameObservations(a.sent)
		a.mu.Unlock()
		if !same {
			a.wakeUp()
		}
	}
}

// report describes the host now.
func (a *Agent) report() jit.Report {
	a.mu.Lock()
	rev := a.applied
	a.mu.Unlock()
	host, _ := os.Hostname()
	r := jit.Report{AppliedRevision: rev, Hostname: host, OS: runtime.GOOS, Listening: ListeningSockets(a.ProcRoot), Enforceable: true}
	if err := a.Firewall.Works(); err != nil {
		r.Enforceable, r.Reason = false, "nftables not usable: "+err.Error()
	}
	return r
}

// event queues an event for the activity log and wakes the pending poll
// so that it is sent at once; the queue drops the oldest when the server
// has been unreachable for long.
func (a *Agent) event(op, outcome string, details map[string]any) {
	b, _ := json.Marshal(details)
	e := jit.AgentEvent{Operation: op, Outcome: outcome, Details: b, Time: time.Now().UTC()}
	defer a.wakeUp()
	for {
		select {
		case a.events <- e:
			return
		default:
			select {
			case old := <-a.events:
				a.Log.Warn("event queue full; dropping the oldest", "operation", old.Operation)
			default:
			}
		}
	}
}

// sendEvents sends unsent and the queued events, oldest first, and
// returns those it could not send yet (they go before the next poll).
func (a *Agent) sendEvents(ctx context.Context, unsent []jit.AgentEvent) []jit.AgentEvent {
	for {
		select {
		case e := <-a.events:
			unsent = append(unsent, e)
			continue
		default:
		}
		break
	}
	if over := len(unsent) - cap(a.events); over > 0 {
		a.Log.Warn("event queue full; dropping the oldest", "events", over)
		unsent = unsent[over:]
	}
	for len(unsent) > 0 {
		err := a.API.AgentEvent(ctx, unsent[0])
		if err != nil && jit.ErrorCode(err) != jit.EInvalid {
			if ctx.Err() == nil {
				a.Log.Warn("cannot send events; trying again before the next poll", "events", len(unsent), "err", err)
			}
			return unsent
		}
		if err != nil {
			a.Log.Error("server refused event", "operation", unsent[0].Operation, "err", err)
		}
		unsent = unsent[1:]
	}
	return unsent[:0]
}

// Retry waits: they start small and double up to a cap, each drawn at
// random between half and all of its bound so that a fleet of agents does
// not come back in step. While the server cannot be reached (or answers
// that it is unavailable) the cap is short, so the agent is back within
// about a second of the server; when the server answers with a refusal
// (the token revoked, too many requests, a request it does not accept),
// retrying fast cannot help and the cap is long.
const (
	retryFirst       = 100 * time.Millisecond
	retryCapOutage   = time.Second
	retryCapRefusals = 30 * time.Second
)

// backoff is the retry state of one loop; its zero value starts afresh.
type backoff struct {
	bound time.Duration
}

// next returns how long to wait after err and raises the bound.
func (b *backoff) next(err error) time.Duration {
	limit := retryCapOutage
	switch jit.ErrorCode(err) {
	case jit.EUnauthorized, jit.EForbidden, jit.ENotFound, jit.EInvalid, jit.EConflict, jit.ETooLarge, jit.ERateLimited:
		limit = retryCapRefusals
	}
	b.bound = min(max(b.bound, retryFirst), limit)
	d := b.bound/2 + rand.N(b.bound/2+1)
	b.bound = min(2*b.bound, limit)
	return d
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Status describes the agent's state folder and firewall for `status`.
type Status struct {
	Config   Config            `json:"config"`
	Cached   *jit.DesiredState `json:"cached,omitempty"`
	Drift    bool              `json:"drift"`
	Reason   string            `json:"reason,omitempty"`
	Nftables string            `json:"nftables"`
}

// ReadStatus reads the state folder and checks the firewall against the
// cached state.
func ReadStatus(ctx context.Context, dir string, fw Firewall) (Status, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return Status{}, err
	}
	cfg.Token = ""
	s := Status{Config: cfg, Nftables: "ok"}
	if err := fw.Works(); err != nil {
		s.Nftables = err.Error()
	}
	h, ok, err := loadCache(dir)
	if err != nil {
		return s, err
	}
	if ok {
		st := h.at(time.Now())
		s.Cached = &st
		s.Drift, s.Reason, err = fw.Check(ctx, st)
	}
	return s, err
}
