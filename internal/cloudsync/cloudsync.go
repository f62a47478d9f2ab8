// Package cloudsync runs ajar's cloud backends inside ajard: a Syncer
// keeps the control plane and one cloud (a Provider: Azure, AWS, Google
// Cloud) in step. Everything here is the same for every cloud; what is the
// cloud's own sits behind Provider.
//
// Discovery: it imports the VMs of the provider's scopes (subscriptions,
// regions, projects) into groups named as the provider says, with their
// external ids, health and supportability (control.UpsertDiscovered), at
// start, every Config.Every and on demand (SyncNow: `POST
// /api/v1/clouds/{backend}/sync`, `ajar azure|aws|gcp sync`). Known VMs that
// a fully listed scope no longer holds become unsupported.
//
// Enforcement: it follows the store's changes and, for every changed VM of
// the provider's backend, applies its desired state in the cloud's
// firewall (the lock and one allow rule per active grant), or removes
// ajar's rules when the VM has no JIT policy or was deleted. At start,
// after each discovery and when changes were dropped (store.AllVMs) it
// reconciles every VM of the backend, so that allow rules of grants that
// ended while ajard was down go away. Grant expiry needs nothing of its
// own: the control plane's expirer ends grants at their end time and bumps
// their VM's revision, which arrives here as a change. A failed attempt is
// retried with exponential backoff (Config.RetryMin up to Config.RetryMax)
// and recorded on the VM and in the activity log
// (control.RecordEnforcement). Attempts for one VM never overlap; at most
// Config.Parallel run at once. Of several replicas sharing a database, one
// runs each backend at a time (RunLeading).
//
// # Adding a cloud
//
// A new cloud needs a package of its own that implements Provider (and,
// optionally, Explainer), its backend's name in jit.Backends, and in
// cmd/ajard a file with its flags and a builder func(config, *slog.Logger)
// (*cloud, error) listed in cloud.go's clouds (one line). Nothing in
// control, server, the console or here changes: the sync route
// (POST /api/v1/clouds/{backend}/sync), leadership among replicas,
// retries, activity and classification come with the Syncer.
package cloudsync

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Provider is one cloud: what a Syncer needs of it. It is safe for
// concurrent use. Errors a user should read are *jit.Error values (their
// code decides whether a failure makes the VM unsupported, see
// control.RecordEnforcement); others are shown shortened, or through
// Explainer when the provider implements it.
type Provider interface {
	// Backend is the backend of the provider's VMs (jit.BackendAzure,
	// jit.BackendAWS, jit.BackendGCP). It names the provider in logs, the
	// leadership among replicas and the sync route.
	Backend() string
	// Scopes lists what one discovery lists, one by one: subscriptions,
	// regions, projects or zones.
	Scopes() []string
	// Discover lists the VMs of scope, each with Backend() as backend, a
	// stable ExternalID, a group and name, addresses, the labels of
	// OwnedLabels, and a report: Exposed (management ports its firewall
	// opens to the internet: JIT recommended) and Enforceable false with a
	// Reason when ajar cannot enforce on it (stopped, no network interface
	// ajar may change, permission denied). An error means the scope could
	// not be listed; its known VMs are then left as they are.
	Discover(ctx context.Context, scope string) ([]jit.Discovered, error)
	// InScope reports whether listing scope in full lists vm when it
	// still exists in the cloud (from the labels Discover set): a known VM
	// that a listed scope covers but did not return is marked vanished.
	InScope(vm jit.VM, scope string) bool
	// OwnedLabels are the label keys Discover sets and keeps current.
	OwnedLabels() []string

	// Apply makes the cloud's firewall hold exactly ajar's rules for
	// state: the lock on state.Lock and one allow per grant; an empty
	// Lock removes them (enforce.Enforcer). jit.ENotFound means the VM is
	// gone from the cloud; jit.EConflict, EForbidden and EInvalid make the
	// VM unsupported with the error's message until an attempt succeeds.
	Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error
	// Remove deletes everything ajar created for vm, and restores what
	// it changed, even when the VM is gone from the cloud.
	Remove(ctx context.Context, vm jit.VM) error
	// Shadowed lists the cloud's rules of others that the lock on vm
	// overrides, or would override, in the provider's notation.
	Shadowed(ctx context.Context, vm jit.VM) ([]string, error)
}

// Explainer is implemented by a Provider whose errors other than
// *jit.Error deserve a better message than their first line: UserError
// returns err as a *jit.Error a user can read.
type Explainer interface {
	UserError(err error) *jit.Error
}

// Config says how a Syncer paces itself. Zero fields take the defaults.
type Config struct {
	Every    time.Duration // re-discovery interval; default 5 minutes
	RetryMin time.Duration // first retry of a failed enforcement; default 1 s
	RetryMax time.Duration // longest wait between retries; default 5 minutes
	Parallel int           // enforcements at once; default 8
}

// ReasonVanished is the reason of a known VM that discovery no longer
// finds.
const ReasonVanished = "VM not found in the cloud by the last discovery"

// Syncer is one cloud backend's loop. Create it with New, start it with
// Run or RunLeading; SyncNow may be called at any time.
type Syncer struct {
	ctl     *control.Control
	p       Provider
	backend string
	cfg     Config
	log     *slog.Logger

	syncMu sync.Mutex    // one discovery at a time
	synced chan struct{} // a discovery finished: reconcile everything
}

// New returns a Syncer that keeps the control plane ctl and the cloud p
// in step.
func New(ctl *control.Control, p Provider, cfg Config, logger *slog.Logger) *Syncer {
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Minute
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{ctl: ctl, p: p, backend: p.Backend(), cfg: cfg, log: logger, synced: make(chan struct{}, 1)}
}

// Backend is the backend of the Syncer's provider.
func (s *Syncer) Backend() string { return s.backend }

// RunLeading runs Run while this server leads the backend among the
// servers sharing its database (store.Store.Lead): of several replicas one
// discovers and enforces at a time, and another takes over when it stops.
// It returns when ctx ends or the store closes.
func (s *Syncer) RunLeading(ctx context.Context) error {
	for {
		// The lead ends when Run has returned, not when ctx ends: another
		// replica must not start while this one still writes to the cloud.
		leadCtx, endLead := context.WithCancel(context.WithoutCancel(ctx))
		stopWaiting := context.AfterFunc(ctx, endLead)
		lost, err := s.ctl.Store().Lead(leadCtx, s.backend)
		stopWaiting()
		if err != nil {
			endLead()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.log.Info("this server discovers and enforces", "backend", s.backend)
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-rctx.Done():
			}
		}()
		err = s.Run(rctx)
		cancel()
		endLead()
		if ctx.Err() != nil || err != nil {
			return err
		}
		s.log.Warn("this server no longer leads the backend; another one may", "backend", s.backend)
	}
}

// Run discovers and enforces until ctx ends; it returns once every
// goroutine it started has stopped.
func (s *Syncer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	changes := s.ctl.Store().Changes(ctx) // before the first reconcile: no change is missed
	wg.Go(func() { s.discoverLoop(ctx) })
	d := &dispatcher{s: s, wg: &wg, work: map[string]*vmWork{}, done: make(chan result)}
	d.queueAll(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.start(ctx)
		timer.Reset(d.nextWake())
		select {
		case <-ctx.Done():
			return nil
		case id, ok := <-changes:
			if !ok {
				return nil
			}
			if id == store.AllVMs {
				d.queueAll(ctx)
			} else {
				d.queue(id)
			}
		case <-s.synced:
			d.queueAll(ctx)
		case r := <-d.done:
			d.finish(r)
		case <-timer.C:
			d.due(ctx)
		}
	}
}

func (s *Syncer) discoverLoop(ctx context.Context) {
	for {
		if _, err := s.SyncNow(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("cloud discovery", "backend", s.backend, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Every):
		}
	}
}

// SyncNow runs one discovery of every scope of the provider and imports
// what it found. A scope that cannot be listed is reported in the summary
// (its VMs are left as they are); the error is for the control plane
// failing. Runs are serialized.
func (s *Syncer) SyncNow(ctx context.Context) (control.CloudSyncSummary, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := time.Now()
	sum := control.CloudSyncSummary{Backend: s.backend, StartedAt: s.ctl.Now(), Scopes: []control.CloudScopeSync{}, Missing: []string{}}
	var found []jit.Discovered
	var listed []string // scopes listed in full
	for _, scope := range s.p.Scopes() {
		ds, err := s.p.Discover(ctx, scope)
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		sc := control.CloudScopeSync{ID: scope, Discovered: len(ds)}
		if err != nil {
			sc.Error = jit.ErrorMessage(s.userError(err))
			s.log.Warn("cloud discovery failed", "backend", s.backend, "scope", scope, "err", err)
		} else {
			listed = append(listed, scope)
		}
		sum.Scopes = append(sum.Scopes, sc)
		for _, d := range ds {
			found = append(found, d)
			if !d.Report.Enforceable {
				sum.Unsupported++
			}
			if len(d.Report.Exposed) > 0 {
				sum.Exposed++
			}
		}
	}
	sum.Discovered = len(found)
	res, err := s.ctl.UpsertDiscovered(ctx, s.p.OwnedLabels(), found)
	if err != nil {
		return sum, err
	}
	sum.DiscoveryResult = res
	for _, l := range []*[]string{&sum.Created, &sum.GroupsCreated, &sum.Skipped} {
		if *l == nil {
			*l = []string{}
		}
	}

	known, err := s.ctl.BackendVMs(ctx, s.backend)
	if err != nil {
		return sum, err
	}
	seen := map[string]bool{}
	for _, d := range found {
		seen[strings.ToLower(d.VM.ExternalID)] = true
	}
	var gone []string
	for _, vm := range known {
		if seen[strings.ToLower(vm.ExternalID)] || !slices.ContainsFunc(listed, func(sc string) bool { return s.p.InScope(vm, sc) }) {
			continue
		}
		gone = append(gone, vm.ID)
		sum.Missing = append(sum.Missing, vm.Group+"/"+vm.Name)
	}
	if err := s.ctl.MarkVanished(ctx, gone, ReasonVanished); err != nil {
		return sum, err
	}
	sum.DurationMs = time.Since(start).Milliseconds()
	s.log.Info("cloud discovery", "backend", s.backend, "discovered", sum.Discovered, "created", len(sum.Created), "updated", sum.Updated,
		"missing", len(sum.Missing), "skipped", len(sum.Skipped), "unsupported", sum.Unsupported, "exposed", sum.Exposed, "ms", sum.DurationMs)
	select {
	case s.synced <- struct{}{}:
	default:
	}
	return sum, nil
}

// userError returns err as a *jit.Error whose message a user can read:
// a *jit.Error as it is, else the provider's explanation, else its first
// line.
func (s *Syncer) userError(err error) error {
	var je *jit.Error
	if errors.As(err, &je) {
		return je
	}
	if x, ok := s.p.(Explainer); ok {
		if je := x.UserError(err); je != nil {
			return je
		}
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return jit.Errorf(jit.EUnavailable, "%s", msg)
}
