// Package cloudsync runs ajar's Azure backend inside ajard: a Syncer keeps
// the control plane and Azure in step.
//
// Discovery: it imports the VMs of the configured subscriptions (and
// resource groups) into groups named after their resource groups, with
// their ARM ids, health and supportability (control.UpsertDiscovered), at
// start, every Config.Every and on demand (SyncNow: `POST
// /api/v1/azure/sync`, `ajar azure sync`). Known VMs that a subscription's
// listing no longer holds become unsupported.
//
// Enforcement: it follows the store's changes and, for every changed VM of
// backend azure, applies its desired state to the VM's NSGs (the lock and
// one allow rule per active grant), or removes ajar's rules when the VM
// has no JIT policy or was deleted. At start, after each discovery and
// when changes were dropped (store.AllVMs) it reconciles every Azure VM,
// so that allow rules of grants that ended while ajard was down go away.
// Grant expiry needs nothing of its own: the control plane's expirer ends
// grants at their end time and bumps their VM's revision, which arrives
// here as a change. A failed attempt is retried with exponential backoff
// (Config.RetryMin up to Config.RetryMax) and recorded on the VM and in
// the activity log (control.RecordEnforcement). Attempts for one VM never
// overlap; at most Config.Parallel run at once.
package cloudsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/ajarhq/ajar/internal/azurensg"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Discoverer lists the VMs of a subscription (azurensg.Client).
type Discoverer interface {
	Discover(ctx context.Context, subscriptionID string, resourceGroups []string) ([]azurensg.Discovered, error)
}

// Enforcer makes desired states true in Azure (azurensg.Enforcer).
type Enforcer interface {
	Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error
	Remove(ctx context.Context, vm jit.VM) error
	Shadowed(ctx context.Context, vm jit.VM) ([]string, error)
}

// Config says what a Syncer covers and how it paces itself. Zero fields
// take the defaults.
type Config struct {
	Subscriptions  []string
	ResourceGroups []string      // empty: the whole subscriptions
	Every          time.Duration // re-discovery interval; default 5 minutes
	RetryMin       time.Duration // first retry of a failed enforcement; default 1 s
	RetryMax       time.Duration // longest wait between retries; default 5 minutes
	Parallel       int           // enforcements at once; default 8
}

// ownedLabels are the labels discovery sets and keeps current.
var ownedLabels = []string{
	azurensg.LabelSubscription, azurensg.LabelResourceGroup, azurensg.LabelLocation,
	azurensg.LabelNIC, azurensg.LabelNSG, azurensg.LabelPowerState,
}

// ReasonVanished is the reason of a known VM that discovery no longer
// finds.
const ReasonVanished = "VM not found in Azure by the last discovery"

// Syncer is the Azure backend's loop. Create it with New, start it with
// Run; SyncNow may be called at any time.
type Syncer struct {
	ctl  *control.Control
	disc Discoverer
	enf  Enforcer
	cfg  Config
	log  *slog.Logger

	syncMu sync.Mutex    // one discovery at a time
	synced chan struct{} // a discovery finished: reconcile everything
}

// New returns a Syncer over the control plane ctl that discovers with d
// and enforces with e.
func New(ctl *control.Control, d Discoverer, e Enforcer, cfg Config, logger *slog.Logger) *Syncer {
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
	return &Syncer{ctl: ctl, disc: d, enf: e, cfg: cfg, log: logger, synced: make(chan struct{}, 1)}
}

// RunLeading runs Run while this server leads the Azure backend among the
// servers sharing its database (store.Store.Lead): of several replicas one
// discovers and enforces at a time, and another takes over when it stops.
// It returns when ctx ends or the store closes.
func (s *Syncer) RunLeading(ctx context.Context) error {
	for {
		// The lead ends when Run has returned, not when ctx ends: another
		// replica must not start while this one still writes to Azure.
		leadCtx, endLead := context.WithCancel(context.WithoutCancel(ctx))
		stopWaiting := context.AfterFunc(ctx, endLead)
		lost, err := s.ctl.Store().Lead(leadCtx, "azure")
		stopWaiting()
		if err != nil {
			endLead()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.log.Info("this server discovers and enforces Azure")
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
		s.log.Warn("this server no longer leads the Azure backend; another one may")
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
			s.log.Error("azure discovery", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Every):
		}
	}
}

// SyncNow runs one discovery of every configured subscription and imports
// what it found. A subscription that cannot be listed is reported in the
// summary (its VMs are left as they are); the error is for the control
// plane failing. Runs are serialized.
func (s *Syncer) SyncNow(ctx context.Context) (control.CloudSyncSummary, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := time.Now()
	sum := control.CloudSyncSummary{Backend: jit.BackendAzure, StartedAt: s.ctl.Now(), Scopes: []control.CloudScopeSync{}, Missing: []string{}}
	var found []control.CloudVM
	listed := map[string]bool{} // lower-cased subscriptions listed in full
	for _, sub := range s.cfg.Subscriptions {
		ds, err := s.disc.Discover(ctx, sub, s.cfg.ResourceGroups)
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		sc := control.CloudScopeSync{ID: sub, Discovered: len(ds)}
		if err != nil {
			sc.Error = jit.ErrorMessage(userError(err))
			s.log.Warn("azure discovery failed", "subscription", sub, "err", err)
		} else {
			listed[strings.ToLower(sub)] = true
		}
		sum.Scopes = append(sum.Scopes, sc)
		for _, d := range ds {
			found = append(found, control.CloudVM{VM: d.VM, Report: d.Report})
			if !d.Report.Enforceable {
				sum.Unsupported++
			}
			if len(d.Report.Exposed) > 0 {
				sum.Exposed++
			}
		}
	}
	sum.Discovered = len(found)
	res, err := s.ctl.UpsertDiscovered(ctx, ownedLabels, found)
	if err != nil {
		return sum, err
	}
	sum.DiscoveryResult = res
	for _, l := range []*[]string{&sum.Created, &sum.GroupsCreated, &sum.Skipped} {
		if *l == nil {
			*l = []string{}
		}
	}

	known, err := s.ctl.BackendVMs(ctx, jit.BackendAzure)
	if err != nil {
		return sum, err
	}
	seen := map[string]bool{}
	for _, d := range found {
		seen[strings.ToLower(d.VM.ExternalID)] = true
	}
	var gone []string
	for _, vm := range known {
		if seen[strings.ToLower(vm.ExternalID)] || !listed[strings.ToLower(vm.Labels[azurensg.LabelSubscription])] {
			continue
		}
		if rgs := s.cfg.ResourceGroups; len(rgs) > 0 && !slices.ContainsFunc(rgs, func(rg string) bool {
			return strings.EqualFold(rg, vm.Labels[azurensg.LabelResourceGroup])
		}) {
			continue
		}
		gone = append(gone, vm.ID)
		sum.Missing = append(sum.Missing, vm.Group+"/"+vm.Name)
	}
	if err := s.ctl.MarkVanished(ctx, gone, ReasonVanished); err != nil {
		return sum, err
	}
	sum.DurationMs = time.Since(start).Milliseconds()
	s.log.Info("azure discovery", "discovered", sum.Discovered, "created", len(sum.Created), "updated", sum.Updated,
		"missing", len(sum.Missing), "skipped", len(sum.Skipped), "unsupported", sum.Unsupported, "exposed", sum.Exposed, "ms", sum.DurationMs)
	select {
	case s.synced <- struct{}{}:
	default:
	}
	return sum, nil
}

// userError returns err as a *jit.Error whose message a user can read:
// azurensg's own errors as they are, an Azure answer shortened to what
// was done and the status.
func userError(err error) error {
	var je *jit.Error
	if errors.As(err, &je) {
		return je
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		what := strings.TrimSuffix(strings.TrimSuffix(err.Error(), re.Error()), ": ")
		msg := "Azure answered " + httpStatusText(re.StatusCode)
		if re.ErrorCode != "" {
			msg += " (" + re.ErrorCode + ")"
		}
		if what != "" && what != err.Error() {
			msg = what + ": " + msg
		}
		return jit.Errorf(jit.EUnavailable, "%s", msg)
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return jit.Errorf(jit.EUnavailable, "%s", msg)
}

func httpStatusText(code int) string {
	return strings.TrimSpace(fmt.Sprintf("%d %s", code, http.StatusText(code)))
}
