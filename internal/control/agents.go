package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// CreateEnrollToken creates a limited-use, expiring token that enrolls
// agents into a group.
func (c *Control) CreateEnrollToken(ctx context.Context, a *Actor, n jit.NewEnrollToken) (jit.CreatedToken, error) {
	if n.Group == "" {
		return jit.CreatedToken{}, jit.Invalid("group", "group is required")
	}
	if err := a.require(jit.PermManageVMs, n.Group, "create enrollment tokens"); err != nil {
		return jit.CreatedToken{}, err
	}
	if n.TTL == "" {
		n.TTL = "PT1H"
	}
	if n.Uses == 0 {
		n.Uses = 1
	}
	if n.Uses < 1 || n.Uses > 10000 {
		return jit.CreatedToken{}, jit.Invalid("uses", "uses must be between 1 and 10000, got %d", n.Uses)
	}
	tk := jit.Token{ID: NewID(), Kind: jit.TokenEnroll, Group: n.Group, Name: "enroll " + n.Group, CreatedAt: c.Now(), UsesLeft: &n.Uses}
	if err := c.ttl(&tk, "ttl", n.TTL); err != nil {
		return jit.CreatedToken{}, err
	}
	return c.createToken(ctx, a, tk, func(tx store.Tx) error {
		_, err := tx.GetGroup(n.Group)
		return targeted(err, "group")
	})
}

// Enroll registers the caller's host as a VM of the enrollment token's
// group and issues the agent credential that can read only that VM.
func (c *Control) Enroll(ctx context.Context, a *Actor, e jit.Enrollment) (jit.Enrolled, error) {
	if a.Token.Kind != jit.TokenEnroll {
		return jit.Enrolled{}, jit.Errorf(jit.EForbidden, "enrollment needs an enrollment token")
	}
	if len(e.Hostname) > MaxHostname {
		return jit.Enrolled{}, jit.Invalid("hostname", "hostname is longer than %d bytes", MaxHostname)
	}
	n := jit.NewVM{Name: e.Name, Group: a.Token.Group, Backend: jit.BackendAgent, OS: e.OS, Addresses: e.Addresses,
		Labels: map[string]string{"hostname": e.Hostname}}
	if err := validateVM(&n); err != nil {
		return jit.Enrolled{}, err
	}
	vm := jit.VM{ID: NewID(), Name: n.Name, Group: n.Group, Backend: n.Backend, OS: n.OS, Addresses: n.Addresses, Labels: n.Labels, CreatedAt: c.Now()}
	secret := NewSecret()
	err := c.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.UseToken(a.Token.ID); err != nil {
			return jit.Errorf(jit.EUnauthorized, "enrollment token has no uses left")
		}
		if err := tx.CreateVM(&vm); err != nil {
			return err
		}
		tk := jit.Token{ID: NewID(), Kind: jit.TokenAgent, VMID: vm.ID, Group: vm.Group, Name: "agent " + vm.Name, CreatedAt: c.Now(), Hash: HashSecret(secret)}
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpAgentEnroll, jit.OutcomeSuccess, &vm, map[string]any{"name": vm.Name, "hostname": e.Hostname, "addresses": vm.Addresses, "enrollToken": a.Token.ID}))
	})
	return jit.Enrolled{VM: vm, Secret: secret}, err
}

// agentVM checks that a is an agent credential and returns its VM id.
func agentVM(a *Actor) (string, error) {
	if a == nil || a.Token.Kind != jit.TokenAgent || a.Token.VMID == "" {
		return "", jit.Errorf(jit.EForbidden, "only agent credentials may do this")
	}
	return a.Token.VMID, nil
}

// Report stores what an agent observed on its host (the heartbeat of
// agents of the previous version, which POST it every 30 s beside their
// long poll) and logs when an agent (re)connects; a report with nothing
// new about the host is kept in memory and written with others later
// (heartbeats.go).
func (c *Control) Report(ctx context.Context, a *Actor, r jit.Report) error {
	vmID, err := agentVM(a)
	if err != nil {
		return err
	}
	if err := checkReport(&r); err != nil {
		return err
	}
	r.Time = c.Now()
	return c.noteReport(ctx, a, vmID, r)
}

// AgentWatch is an agent's long poll: it takes the agent's report (as
// Report does), then answers the desired state of the agent's VM as soon
// as its revision is past w.After (at once when w.After < 0), or, when
// wait runs out first, reports changed false. While it waits, the agent
// counts as seen (heartbeats.go): its report needs no other heartbeat.
func (c *Control) AgentWatch(ctx context.Context, a *Actor, w jit.Watch, wait time.Duration) (st jit.DesiredState, changed bool, err error) {
	p, err := c.StartAgentPoll(ctx, a, w)
	if err != nil {
		return st, false, err
	}
	defer p.End()
	return p.Wait(ctx, wait)
}

// AgentPoll is an agent's long poll under way (StartAgentPoll); until End
// the agent counts as seen.
type AgentPoll struct {
	c     *Control
	a     *Actor
	vmID  string
	after int64
	done  func()
}

// StartAgentPoll takes the agent's report (as Report does) and starts its
// long poll for a desired state past w.After.
func (c *Control) StartAgentPoll(ctx context.Context, a *Actor, w jit.Watch) (*AgentPoll, error) {
	vmID, err := agentVM(a)
	if err != nil {
		return nil, err
	}
	if w.After < -1 {
		return nil, jit.Invalid("after", "after must be -1 or a revision, got %d", w.After)
	}
	if err := checkReport(&w.Report); err != nil {
		return nil, err
	}
	w.Report.Time = c.Now()
	if err := c.noteReport(ctx, a, vmID, w.Report); err != nil {
		return nil, err
	}
	return &AgentPoll{c: c, a: a, vmID: vmID, after: w.After, done: c.beats.poll(vmID, c.Now)}, nil
}

// Wait answers the state once its revision is past the poll's after (at
// once when after < 0, or with wait 0), or, when wait runs out first,
// changed false; see WatchDesiredState.
func (p *AgentPoll) Wait(ctx context.Context, wait time.Duration) (st jit.DesiredState, changed bool, err error) {
	if p.after < 0 {
		wait = 0
	}
	st, err = p.c.WatchDesiredState(ctx, p.a, p.vmID, p.after, wait)
	return st, err == nil && st.Revision > p.after, err
}

// OnChange calls fn, which must not block, once at the VM's next change
// or when the server drains (Drain), whichever comes first, unless cancel
// is called before. It lets a poll wait without a goroutine of its own.
func (p *AgentPoll) OnChange(fn func()) (cancel func()) {
	var once sync.Once
	call := func() { once.Do(fn) }
	w := p.c.hub.call(p.vmID, call)
	select {
	case <-p.c.draining:
		call()
	default:
	}
	return func() { p.c.hub.cancel(p.vmID, w) }
}

// Draining reports whether the server drains (Drain): a poll answers at
// once.
func (p *AgentPoll) Draining() bool {
	select {
	case <-p.c.draining:
		return true
	default:
		return false
	}
}

// End ends the poll: the agent was seen until now.
func (p *AgentPoll) End() { p.done() }

// Bounds on an agent's report, which every VM listing returns.
const (
	MaxHostname     = 253 // a DNS name
	MaxReportOS     = 64
	MaxReportReason = 1024
	MaxSockets      = jit.MaxReportSockets // listening or exposed sockets
)

// checkReport refuses a report with a field past its bound, naming the
// field and the bound.
func checkReport(r *jit.Report) error {
	switch {
	case len(r.Hostname) > MaxHostname:
		return jit.Invalid("hostname", "hostname is longer than %d bytes", MaxHostname)
	case len(r.OS) > MaxReportOS:
		return jit.Invalid("os", "os is longer than %d bytes", MaxReportOS)
	case len(r.Reason) > MaxReportReason:
		return jit.Invalid("reason", "reason is longer than %d bytes", MaxReportReason)
	}
	for _, f := range []struct {
		name  string
		socks []jit.Socket
	}{{"listening", r.Listening}, {"exposed", r.Exposed}} {
		if len(f.socks) > MaxSockets {
			return jit.Invalid(f.name, "at most %d %s sockets, got %d", MaxSockets, f.name, len(f.socks))
		}
		for i, s := range f.socks {
			field := fmt.Sprintf("%s[%d]", f.name, i)
			if s.Protocol != jit.ProtoTCP && s.Protocol != jit.ProtoUDP {
				return jit.Invalid(field+".protocol", "protocol must be TCP or UDP")
			}
			if s.Port < 1 || s.Port > 65535 {
				return jit.Invalid(field+".port", "port must be between 1 and 65535, got %d", s.Port)
			}
			if s.Address != "" {
				if a, err := netip.ParseAddr(s.Address); err != nil || a.Zone() != "" {
					return jit.Invalid(field+".address", "address must be an IP address")
				}
			}
		}
	}
	return nil
}

// An agent may log AgentEventBurst events at once, then one every
// AgentEventEvery; past that it gets 429 with Retry-After (the agent
// queues its events and retries).
const (
	AgentEventBurst = 120
	AgentEventEvery = time.Second
)

// RecordAgentEvent writes an agent's event (drift detected or repaired,
// enforcement applied or failed) to the activity log.
func (c *Control) RecordAgentEvent(ctx context.Context, a *Actor, e jit.AgentEvent) error {
	vmID, err := agentVM(a)
	if err != nil {
		return err
	}
	if _, ok, retry := c.agentEvents.take(vmID, c.Now()); !ok {
		return jit.RateLimited(retry, "too many events from this agent; try again in %s", retry.Round(time.Second))
	}
	switch e.Operation {
	case jit.OpDriftDetect, jit.OpDriftRepair, jit.OpEnforceApply, jit.OpEnforceFail:
	default:
		return jit.Invalid("operation", "agents may report drift.detect, drift.repair, enforcement.apply or enforcement.fail, got %q", e.Operation)
	}
	if e.Outcome != jit.OutcomeFailure {
		e.Outcome = jit.OutcomeSuccess
	}
	if len(e.Details) > 16<<10 {
		return jit.Invalid("details", "details are larger than 16 KiB")
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		vm, err := tx.GetVM(vmID)
		if err != nil {
			return err
		}
		ev := c.event(a, e.Operation, e.Outcome, &vm, nil)
		if len(e.Details) > 0 {
			if !json.Valid(e.Details) {
				return jit.Invalid("details", "details are not valid JSON")
			}
			ev.Details = e.Details
		}
		return tx.AppendEvent(ev)
	})
}

// MarkSilentAgents marks agents silent for longer than AgentOfflineAfter
// as disconnected and logs it; it returns how many it marked. The mark and
// the event share a transaction, so each silence is logged once even with
// several servers.
func (c *Control) MarkSilentAgents(ctx context.Context) (int, error) {
	n := 0
	err := c.store.Update(ctx, func(tx store.Tx) error {
		n = 0
		vms, err := tx.ListVMs(store.VMFilter{Backend: jit.BackendAgent})
		if err != nil {
			return err
		}
		now := c.Now()
		for _, vm := range vms {
			r := vm.Report
			if r == nil || r.Disconnected || now.Sub(r.Time) <= jit.AgentOfflineAfter {
				continue
			}
			r.Disconnected = true
			if err := tx.SetReport(vm.ID, r); err != nil {
				return err
			}
			if err := tx.AppendEvent(c.event(nil, jit.OpAgentDisconnect, jit.OutcomeSuccess, &vm, map[string]any{"lastSeen": r.Time, "hostname": r.Hostname})); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
