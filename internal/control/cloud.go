package control

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Cloud backends.
//
// A cloud backend (azure, aws, gcp; see cloudsync.Provider) runs inside ajard: it discovers
// VMs from the cloud's API and enforces their desired states in the
// cloud's firewall. It acts as the system (a nil *Actor) through the
// operations below, which write the same activity log as everything else.
//
// What a backend learns about a VM's enforcement is kept on the VM:
//
//   - LabelEnforcementError holds the message of the last failed attempt
//     until one succeeds. A failure that needs someone to act (no free
//     priority, no NSG, no permission, the VM gone: jit.EConflict,
//     EForbidden, ENotFound, EInvalid) also makes the VM's report
//     unenforceable with that reason, so that the VM shows as unsupported
//     or with an enforcement error; a passing failure (an outage) does not.
//     The first failure, and each new message, is logged (enforcement.fail);
//     a success after failures is logged (enforcement.apply), as is every
//     newly applied revision.
//   - LabelShadowedRules lists the cloud's existing rules the lock
//     overrides (ShadowedRules).

// Labels ajar keeps on the VMs of cloud backends.
const (
	LabelEnforcementError = "ajar.enforcement-error"
	LabelShadowedRules    = "ajar.shadowed-rules" // comma-separated
)

// DiscoveryResult says what UpsertDiscovered changed.
type DiscoveryResult struct {
	Created       []string `json:"created"`       // group/name of the VMs created
	GroupsCreated []string `json:"groupsCreated"` // groups created for them
	Updated       int      `json:"updated"`       // known VMs whose OS, addresses or labels changed
	Unchanged     int      `json:"unchanged"`
	Skipped       []string `json:"skipped"` // "group/name: why"
}

// CloudSyncSummary is the outcome of one discovery run of a cloud backend.
type CloudSyncSummary struct {
	Backend     string           `json:"backend"`
	StartedAt   time.Time        `json:"startedAt"`
	DurationMs  int64            `json:"durationMs"`
	Scopes      []CloudScopeSync `json:"scopes"`     // per subscription (account, project)
	Discovered  int              `json:"discovered"` // VMs found
	Unsupported int              `json:"unsupported"`
	Exposed     int              `json:"exposed"` // VMs with a management port open to the internet
	Missing     []string         `json:"missing"` // known VMs no longer found: group/name
	DiscoveryResult
}

// CloudScopeSync is the discovery of one subscription.
type CloudScopeSync struct {
	ID         string `json:"id"`
	Discovered int    `json:"discovered"`
	Error      string `json:"error,omitempty"`
}

// AuthorizeCloudSync checks that a may start a discovery run (admins).
func (c *Control) AuthorizeCloudSync(a *Actor) error {
	return a.require(jit.PermAdmin, "", "run cloud discovery")
}

// BackendVMs returns every VM of backend, for the backend itself.
func (c *Control) BackendVMs(ctx context.Context, backend string) ([]jit.VM, error) {
	var out []jit.VM
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListVMs(store.VMFilter{Backend: backend})
		return err
	})
	return out, err
}

// BackendDesiredState returns a VM and what its backend must make true
// now, read together, for the backend that enforces on it.
func (c *Control) BackendDesiredState(ctx context.Context, vmID string) (jit.VM, jit.DesiredState, error) {
	var (
		vm jit.VM
		st jit.DesiredState
	)
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		if vm, err = tx.GetVM(vmID); err != nil {
			return err
		}
		st, err = desiredState(tx, vm, c.Now())
		return err
	})
	return vm, st, err
}

// UpsertDiscovered imports what a cloud backend discovered, as the
// system (VM.ExternalID, the cloud's id of the VM, identifies it): a VM not known yet (by external id, compared case-insensitively,
// among the VMs of its backend) is created, with its group when that does
// not exist, and logged (vm.create, group.create); a known one gets the
// discovered OS, addresses and labels. owned lists the label keys
// discovery manages: on a known VM they are replaced by the discovered
// ones and missing ones deleted, and every other label is kept. Each VM's
// report becomes the discovered one, timed now, keeping the revision last
// applied and an enforcement failure that made it unenforceable. A VM that
// cannot be imported (invalid name, name taken in its group) is skipped
// and listed in the result.
func (c *Control) UpsertDiscovered(ctx context.Context, owned []string, found []jit.Discovered) (DiscoveryResult, error) {
	var res DiscoveryResult
	err := c.store.Update(ctx, func(tx store.Tx) error {
		res = DiscoveryResult{}
		now := c.Now()
		known := map[string]map[string]jit.VM{} // backend -> lower-cased external id -> VM
		index := func(backend string) (map[string]jit.VM, error) {
			if m, ok := known[backend]; ok {
				return m, nil
			}
			vms, err := tx.ListVMs(store.VMFilter{Backend: backend})
			if err != nil {
				return nil, err
			}
			m := map[string]jit.VM{}
			for _, vm := range vms {
				if vm.ExternalID != "" {
					m[strings.ToLower(vm.ExternalID)] = vm
				}
			}
			known[backend] = m
			return m, nil
		}
		for _, d := range found {
			n := jit.NewVM{Name: d.VM.Name, Group: d.VM.Group, Backend: d.VM.Backend, OS: d.VM.OS,
				Addresses: slices.Clone(d.VM.Addresses), Labels: maps.Clone(d.VM.Labels), ExternalID: d.VM.ExternalID}
			skip := func(why string) { res.Skipped = append(res.Skipped, n.Group+"/"+n.Name+": "+why) }
			if n.Backend == "" || n.Backend == jit.BackendAgent || n.ExternalID == "" {
				skip("not a cloud VM with an external id")
				continue
			}
			if err := ValidName("group", n.Group); err != nil {
				skip("group: " + jit.ErrorMessage(err))
				continue
			}
			if err := validateVM(&n); err != nil {
				skip(jit.ErrorMessage(err))
				continue
			}
			m, err := index(n.Backend)
			if err != nil {
				return err
			}
			rep := d.Report
			rep.Time = now
			key := strings.ToLower(n.ExternalID)
			if vm, ok := m[key]; ok {
				upd := vm
				if d.VM.OS != "" {
					upd.OS = n.OS
				}
				upd.Addresses = n.Addresses
				upd.Labels = mergeLabels(vm.Labels, n.Labels, owned)
				if upd.OS != vm.OS || !slices.Equal(upd.Addresses, vm.Addresses) || !maps.Equal(upd.Labels, vm.Labels) {
					if err := tx.UpdateVM(upd); err != nil {
						return err
					}
					res.Updated++
				} else {
					res.Unchanged++
				}
				keepEnforcement(vm, &rep)
				if err := tx.SetReport(vm.ID, &rep); err != nil {
					return err
				}
				upd.Report = &rep
				m[key] = upd
				continue
			}
			// Resource groups ignore case: a VM joins the group whose name
			// differs from its resource group's only in case.
			if g, ok, err := groupFold(tx, n.Group); err != nil {
				return err
			} else if ok {
				n.Group = g.Name
			}
			if _, err := tx.GetGroup(n.Group); jit.ErrorCode(err) == jit.ENotFound {
				if err := tx.CreateGroup(jit.Group{Name: n.Group, CreatedAt: now}); err != nil {
					return err
				}
				if err := tx.AppendEvent(c.event(nil, jit.OpGroupCreate, jit.OutcomeSuccess, nil, map[string]string{"group": n.Group, "via": n.Backend + " discovery"})); err != nil {
					return err
				}
				res.GroupsCreated = append(res.GroupsCreated, n.Group)
			} else if err != nil {
				return err
			}
			taken, err := tx.ListVMs(store.VMFilter{Group: n.Group, Name: n.Name})
			if err != nil {
				return err
			}
			if len(taken) > 0 {
				skip("a VM of that name already exists in the group (" + taken[0].Backend + ")")
				continue
			}
			vm := jit.VM{ID: NewID(), Name: n.Name, Group: n.Group, Backend: n.Backend, OS: n.OS, Addresses: n.Addresses,
				Labels: n.Labels, ExternalID: n.ExternalID, CreatedAt: now}
			if err := tx.CreateVM(&vm); err != nil {
				return err
			}
			if err := tx.SetReport(vm.ID, &rep); err != nil {
				return err
			}
			if err := tx.AppendEvent(c.event(nil, jit.OpVMCreate, jit.OutcomeSuccess, &vm,
				map[string]any{"name": vm.Name, "backend": vm.Backend, "externalId": vm.ExternalID, "via": "discovery"})); err != nil {
				return err
			}
			vm.Report = &rep
			m[key] = vm
			res.Created = append(res.Created, vm.Group+"/"+vm.Name)
		}
		return nil
	})
	return res, err
}

// mergeLabels returns old with the keys in owned replaced by those of
// found (and deleted where found has none), every other key kept.
func mergeLabels(old, found map[string]string, owned []string) map[string]string {
	out := maps.Clone(old)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range owned {
		delete(out, k)
	}
	for k, v := range found {
		if slices.Contains(owned, k) || out[k] == "" {
			out[k] = v
		}
	}
	return out
}

// keepEnforcement carries into a discovered report what enforcement
// recorded on vm: the revision applied, and an enforcement failure that
// made the VM unenforceable.
func keepEnforcement(vm jit.VM, rep *jit.Report) {
	old := vm.Report
	if old == nil {
		return
	}
	rep.AppliedRevision = old.AppliedRevision
	if msg := vm.Labels[LabelEnforcementError]; msg != "" && !old.Enforceable && old.Reason == msg && rep.Enforceable {
		rep.Enforceable, rep.Reason = false, msg
	}
}

// MarkVanished records that the VMs with ids were not found by their
// backend's discovery: their reports become unenforceable with reason.
func (c *Control) MarkVanished(ctx context.Context, ids []string, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		for _, id := range ids {
			vm, err := tx.GetVM(id)
			if jit.ErrorCode(err) == jit.ENotFound {
				continue
			}
			if err != nil {
				return err
			}
			rep := jit.Report{}
			if vm.Report != nil {
				rep = *vm.Report
			}
			if !rep.Enforceable && rep.Reason == reason {
				continue
			}
			rep.Time, rep.Enforceable, rep.Reason, rep.Exposed = c.Now(), false, reason, nil
			if err := tx.SetReport(id, &rep); err != nil {
				return err
			}
		}
		return nil
	})
}

// EnforcementResult is what one attempt of a cloud backend to enforce a
// VM's desired state came to.
type EnforcementResult struct {
	Revision int64 // of the desired state enforced
	Locked   int   // ports locked
	Grants   int   // grants allowed
	// Removed is true when the VM had no lock and ajar's rules were
	// removed.
	Removed bool
	// Shadowed lists the existing rules the lock overrides.
	Shadowed []string
	// Err is nil when the state was enforced. Its jit.ErrorMessage is what
	// the VM and the log show, so backends give a *jit.Error.
	Err error
	// Attempt counts the failures in a row, this one included.
	Attempt int
}

// persistent reports whether a failure needs someone to act, rather than
// passing by itself.
func persistent(err error) bool {
	switch jit.ErrorCode(err) {
	case jit.EConflict, jit.EForbidden, jit.ENotFound, jit.EInvalid:
		return true
	}
	return false
}

// RecordEnforcement records on the VM, and in the activity log when there
// is news, what a cloud backend's attempt to enforce its desired state
// came to (see "Cloud backends" above). A VM deleted meanwhile is ignored.
func (c *Control) RecordEnforcement(ctx context.Context, vmID string, r EnforcementResult) error {
	return c.store.Update(ctx, func(tx store.Tx) error {
		vm, err := tx.GetVM(vmID)
		if jit.ErrorCode(err) == jit.ENotFound {
			return nil
		}
		if err != nil {
			return err
		}
		labels := maps.Clone(vm.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		rep := jit.Report{Time: c.Now(), Enforceable: true}
		switch {
		case vm.Report != nil:
			rep = *vm.Report
		case r.Removed:
			// Removing rules says nothing of whether the backend could
			// enforce on the VM.
			rep.Enforceable, rep.Reason = false, jit.Unsupported(vm, rep.Time)
		}
		before := rep
		prevErr := labels[LabelEnforcementError]
		flipped := prevErr != "" && !rep.Enforceable && rep.Reason == prevErr
		var ev *jit.Event
		if r.Err != nil {
			msg := clipLabel(jit.ErrorMessage(r.Err))
			labels[LabelEnforcementError] = msg
			switch {
			case persistent(r.Err) && (rep.Enforceable || flipped):
				rep.Enforceable, rep.Reason = false, msg
			case !persistent(r.Err) && flipped:
				rep.Enforceable, rep.Reason = true, ""
			}
			if msg != prevErr {
				ev = c.event(nil, jit.OpEnforceFail, jit.OutcomeFailure, &vm, map[string]any{
					"backend": vm.Backend, "revision": r.Revision, "error": msg, "code": jit.ErrorCode(r.Err), "attempt": r.Attempt})
			}
		} else {
			delete(labels, LabelEnforcementError)
			if flipped {
				rep.Enforceable, rep.Reason = true, ""
			}
			if len(r.Shadowed) > 0 && !r.Removed {
				labels[LabelShadowedRules] = joinClipped(r.Shadowed)
			} else {
				delete(labels, LabelShadowedRules)
			}
			if prevErr != "" || (r.Revision != rep.AppliedRevision && !(r.Removed && rep.AppliedRevision == 0)) {
				d := map[string]any{"backend": vm.Backend, "revision": r.Revision, "locked": r.Locked, "grants": r.Grants}
				if r.Removed {
					d["removed"] = true
				}
				if len(r.Shadowed) > 0 {
					d["shadowed"] = r.Shadowed
				}
				if prevErr != "" {
					d["recovered"] = prevErr
				}
				ev = c.event(nil, jit.OpEnforceApply, jit.OutcomeSuccess, &vm, d)
			}
			rep.AppliedRevision = r.Revision
		}
		if !maps.Equal(labels, vm.Labels) {
			vm.Labels = labels
			if err := tx.UpdateVM(vm); err != nil {
				return err
			}
		}
		if vm.Report == nil || rep.Enforceable != before.Enforceable || rep.Reason != before.Reason || rep.AppliedRevision != before.AppliedRevision {
			if err := tx.SetReport(vm.ID, &rep); err != nil {
				return err
			}
		}
		if ev != nil {
			return tx.AppendEvent(ev)
		}
		return nil
	})
}

// ShadowedRules returns the cloud firewall rules the lock on vm overrides,
// as its backend last reported them.
func ShadowedRules(vm jit.VM) []string {
	var out []string
	for _, s := range strings.Split(vm.Labels[LabelShadowedRules], ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// maxLabelValue is the longest label value validateVM accepts.
const maxLabelValue = 512

// clipLabel shortens s to fit in a label value.
func clipLabel(s string) string {
	if len(s) <= maxLabelValue {
		return s
	}
	cut := maxLabelValue - len("...")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// joinClipped joins items with commas, leaving out those that do not fit
// in a label value.
func joinClipped(items []string) string {
	var b strings.Builder
	for _, s := range items {
		if b.Len()+len(s)+1 > maxLabelValue {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return b.String()
}
