package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// RequestAccess checks an access request against the requester's
// permissions and each VM's policy and, when every check passes, opens its
// grants, superseding older grants for the same VM, port and source; when
// a VM's policy has an approval rule, the request waits for approvers
// instead (status pending, no grants) and opens its grants when approved.
// A refusal names the failing check, changes nothing and is logged.
func (c *Control) RequestAccess(ctx context.Context, a *Actor, r jit.AccessRequest) (jit.Request, error) {
	return c.requestAccess(ctx, a, r, true)
}

// RequestAccessNow is RequestAccess for callers that cannot wait, such as
// the Azure-compatible API: a request whose VM's policy requires approval
// is refused (invalid, naming the VM) rather than left pending.
func (c *Control) RequestAccessNow(ctx context.Context, a *Actor, r jit.AccessRequest) (jit.Request, error) {
	return c.requestAccess(ctx, a, r, false)
}

func (c *Control) requestAccess(ctx context.Context, a *Actor, r jit.AccessRequest, mayWait bool) (jit.Request, error) {
	req := jit.Request{ID: NewID(), User: a.Name(), Address: a.addr(), Justification: strings.TrimSpace(r.Justification), CreatedAt: c.Now()}
	var refusedVM *jit.VM
	var bodyHash string
	var err error
	if r.IdempotencyKey != "" {
		if err = jit.CheckIdempotencyKey(r.IdempotencyKey); err != nil {
			return jit.Request{}, err
		}
		b, _ := json.Marshal(r)
		sum := sha256.Sum256(b)
		bodyHash = hex.EncodeToString(sum[:])
	}
	replayed := false
	if err == nil {
		err = jit.CheckRequestShape(&r)
	}
	if err == nil {
		// Each VM's group is checked below; this refuses early those who
		// may request nowhere.
		if a.Token.Kind != jit.TokenUser || len(jit.Bindings(a.Bindings, jit.PermRequest)) == 0 {
			err = jit.Errorf(jit.EForbidden, "%s may not request access", a.Name())
		}
	}
	if err == nil {
		err = c.store.Update(ctx, func(tx store.Tx) error {
			req.Grants, req.Status, req.Group, req.Required, req.Asked, req.ExpiresAt = nil, "", "", 0, nil, nil
			replayed = false
			if r.IdempotencyKey != "" {
				hash, id, err := tx.GetRequestKey(a.Name(), r.IdempotencyKey)
				switch {
				case err == nil && hash != bodyHash:
					return &jit.Error{Code: jit.EConflict, Target: "Idempotency-Key", Message: fmt.Sprintf("Idempotency-Key %s was used for a different request (%s); send a new key for a new request", r.IdempotencyKey, id)}
				case err == nil:
					replayed = true
					req, err = tx.GetRequest(id)
					return err
				case jit.ErrorCode(err) != jit.ENotFound:
					return err
				}
			}
			p, vm, err := c.planGrants(tx, a, r, req.ID, req.CreatedAt)
			refusedVM = vm
			if err != nil {
				return err
			}
			if r.IdempotencyKey != "" {
				if err := tx.PutRequestKey(a.Name(), r.IdempotencyKey, bodyHash, req.ID, req.CreatedAt); err != nil {
					return err
				}
			}
			if p.required > 0 {
				if !mayWait {
					refusedVM = &p.vms[0].vm
					return jit.Invalid("virtualMachines[0].id", "the JIT policy of VM %s requires approval by %d approver(s); request access through ajar's own API, CLI or console, where the request waits for approval", p.vms[0].vm.Name, p.required)
				}
				return c.holdRequest(tx, a, r, &req, p)
			}
			req.Status = jit.RequestApproved
			return c.openPlanned(tx, a, p, &req, nil)
		})
	}
	if err != nil {
		if code := jit.ErrorCode(err); code != jit.EInternal && code != jit.EUnavailable {
			vms := []*jit.VM{refusedVM}
			if refusedVM == nil {
				vms = c.namedVMs(ctx, a, r)
			}
			err = c.logRefusal(ctx, a, jit.OpRequestRefuse, vms, err, map[string]any{"request": r})
		}
		return jit.Request{}, err
	}
	if replayed {
		return req, nil
	}
	for _, g := range req.Grants {
		c.noteEnd(g.EndTime)
	}
	if req.ExpiresAt != nil {
		c.noteEnd(*req.ExpiresAt)
	}
	return req, nil
}

// namedVMs returns the VMs a refused request names that the actor may
// read, which its refusal is logged against; VMs the actor may not read
// stay unnamed, as they stay invisible.
func (c *Control) namedVMs(ctx context.Context, a *Actor, r jit.AccessRequest) []*jit.VM {
	var out []*jit.VM
	err := c.store.View(ctx, func(tx store.Tx) error {
		seen := map[string]bool{}
		for i, vr := range r.VirtualMachines {
			if i == jit.MaxRequestVMs {
				break
			}
			if vr.ID == "" || seen[vr.ID] {
				continue
			}
			seen[vr.ID] = true
			vm, err := tx.GetVM(vr.ID)
			if jit.ErrorCode(err) == jit.ENotFound {
				continue
			}
			if err != nil {
				return err
			}
			if a.Can(jit.PermRead, vm.Group) {
				out = append(out, &vm)
			}
		}
		return nil
	})
	if err != nil {
		c.log.Error("read the VMs of a refused request", "err", err)
		return nil
	}
	return out
}

// plan is what an access request would open, VM by VM, and the approval
// its VMs' policies ask for (required 0: none).
type plan struct {
	vms []plannedVM
	// required is the most approvers a VM's policy asks for, lifetime the
	// shortest wait they allow; all the VMs are then in group.
	required int
	lifetime time.Duration
	group    string
	// auto is set when the VMs' policies ask for approval and their
	// auto-approval conditions waived it for this request.
	auto bool
}

type plannedVM struct {
	vm     jit.VM
	grants []jit.Grant
	active []jit.Grant // the user's active grants the new ones may supersede
}

// planGrants checks an access request of actor a, made at now, inside the
// transaction and returns what it would open. On a refusal it returns the
// VM at fault, if any.
func (c *Control) planGrants(tx store.Tx, a *Actor, r jit.AccessRequest, reqID string, now time.Time) (plan, *jit.VM, error) {
	var p plan
	justification := strings.TrimSpace(r.Justification)
	for i, vr := range r.VirtualMachines {
		field := fmt.Sprintf("virtualMachines[%d]", i)
		who := jit.Requester{User: a.Name(), Address: a.Address}
		var targets []store.GrantTarget
		for _, pr := range vr.Ports {
			if src, err := who.SourceOf(pr); err == nil && src.IsValid() {
				targets = append(targets, store.GrantTarget{Port: pr.Number, Source: src.String()})
			}
		}
		vm, polp, active, err := tx.GetVMAccess(vr.ID, a.Name(), targets)
		if err == nil && !a.Can(jit.PermRead, vm.Group) {
			err = jit.Errorf(jit.ENotFound, "VM %s not found", vr.ID) // other groups' VMs stay invisible
		}
		if err != nil {
			return p, nil, targeted(err, field+".id")
		}
		if !a.Can(jit.PermRequest, vm.Group) {
			return p, &vm, &jit.Error{Code: jit.EForbidden, Target: field + ".id", Message: fmt.Sprintf("%s may not request access to VMs in group %s", a.Name(), vm.Group)}
		}
		if polp == nil {
			return p, &vm, &jit.Error{Code: jit.EInvalid, Message: fmt.Sprintf("VM %s has no JIT policy", vm.Name), Target: field + ".id"}
		}
		pol := *polp
		if pol.RequireJustification && justification == "" {
			return p, &vm, jit.Invalid("justification", "the JIT policy of VM %s requires a justification", vm.Name)
		}
		ports := vr.Ports
		if len(ports) == 0 {
			return p, &vm, jit.Invalid(field+".ports", "name at least one port")
		}
		who.AnySource = a.Can(jit.PermRequestAnySource, vm.Group)
		var gs []jit.Grant
		for j, pr := range ports {
			g, err := jit.PlanGrant(vm, pol, pr, fmt.Sprintf("%s.ports[%d]", field, j), who, now)
			if err != nil {
				return p, &vm, err
			}
			for _, o := range gs {
				if g.Overlaps(o) {
					return p, &vm, jit.Invalid(fmt.Sprintf("%s.ports[%d]", field, j), "port %d/%s from %s is asked for twice", g.Port, g.Protocol, g.Source)
				}
			}
			g.ID, g.RequestID = NewID(), reqID
			gs = append(gs, g)
		}
		if pol.Approval != nil && pol.Approval.AutoApprove != nil && pol.Approval.AutoApprove.Allows(durations(gs), now, a.Bindings) {
			p.auto = true
		} else if pol.Approval != nil {
			p.required = max(p.required, pol.Approval.Required)
			if l := pol.Approval.Lifetime(); p.lifetime == 0 || l < p.lifetime {
				p.lifetime = l
			}
		}
		p.vms = append(p.vms, plannedVM{vm, gs, active})
	}
	if p.required > 0 {
		p.auto = false
		p.group = p.vms[0].vm.Group
		for i, o := range p.vms {
			if o.vm.Group != p.group {
				return p, &o.vm, jit.Invalid(fmt.Sprintf("virtualMachines[%d].id", i), "a request that needs approval names VMs of one group; VM %s is in group %s, VM %s in %s", o.vm.Name, o.vm.Group, p.vms[0].vm.Name, p.group)
			}
		}
	}
	return p, nil, nil
}

// openPlanned opens a plan's grants for req, superseding the requester's
// older grants. approved, when set, is the pending request's state at its
// approval, written in place of creating the request.
func (c *Control) openPlanned(tx store.Tx, a *Actor, p plan, req *jit.Request, approved *jit.Request) error {
	// Supersede first, then write the request and its grants: its writes
	// then go to the database together.
	for _, o := range p.vms {
		for _, old := range o.active {
			for _, g := range o.grants {
				if g.Overlaps(old) {
					if err := c.endGrant(tx, a, o.vm, old, jit.GrantSuperseded, "newer request "+req.ID, nil); err != nil {
						return err
					}
					break
				}
			}
		}
	}
	if approved == nil {
		if err := tx.CreateRequest(*req); err != nil {
			return err
		}
	} else if ok, err := tx.SetRequestState(*approved, jit.RequestPending); err != nil {
		return err
	} else if !ok {
		return jit.Errorf(jit.EConflict, "request %s is no longer pending", req.ID)
	}
	var events []*jit.Event
	req.Grants = nil
	for _, o := range p.vms {
		for _, g := range o.grants {
			if err := tx.CreateGrant(g); err != nil {
				return err
			}
			events = append(events, c.event(a, jit.OpGrantOpen, jit.OutcomeSuccess, &o.vm, grantDetails(g)))
			req.Grants = append(req.Grants, g)
		}
		if err := tx.BumpRevision(o.vm.ID); err != nil {
			return err
		}
	}
	details := map[string]any{"request": req.ID, "justification": req.Justification, "grants": len(req.Grants)}
	if approved != nil {
		details["user"], details["approvers"] = req.User, approved.Decisions
	} else if p.auto {
		details["autoApproved"] = true
	}
	var vm *jit.VM
	if len(p.vms) == 1 {
		vm = &p.vms[0].vm
	}
	// One statement for every event of the request.
	return tx.AppendEvent(append(events, c.event(a, jit.OpRequestApprove, jit.OutcomeSuccess, vm, details))...)
}

func durations(gs []jit.Grant) []time.Duration {
	out := make([]time.Duration, len(gs))
	for i, g := range gs {
		out[i] = g.EndTime.Sub(g.StartTime)
	}
	return out
}

func grantDetails(g jit.Grant) map[string]any {
	return map[string]any{"grant": g.ID, "request": g.RequestID, "vm": g.VMName, "port": g.Port, "protocol": g.Protocol,
		"source": g.Source, "user": g.User, "startTime": g.StartTime, "endTime": g.EndTime}
}

// endGrant ends one active grant and logs it, with why and, when not nil,
// the change that caused it. It does not bump the VM's revision; callers
// do once per VM.
func (c *Control) endGrant(tx store.Tx, a *Actor, vm jit.VM, g jit.Grant, status, why string, cause any) error {
	at := c.Now()
	if status == jit.GrantExpired {
		at = g.EndTime
	}
	ok, err := tx.EndGrant(g.ID, status, at, a.Name())
	if err != nil || !ok {
		return err
	}
	op := map[string]string{jit.GrantExpired: jit.OpGrantExpire, jit.GrantRevoked: jit.OpGrantRevoke, jit.GrantSuperseded: jit.OpGrantSupersede}[status]
	d := grantDetails(g)
	d["endedAt"], d["reason"] = at, why
	if cause != nil {
		d["cause"] = cause
	}
	return tx.AppendEvent(c.event(a, op, jit.OutcomeSuccess, &vm, d))
}

// endAll revokes every active grant of vm, for why and cause (see endGrant).
func (c *Control) endAll(tx store.Tx, a *Actor, vm jit.VM, why string, cause any) error {
	active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
	if err != nil {
		return err
	}
	for _, g := range active {
		if err := c.endGrant(tx, a, vm, g, jit.GrantRevoked, why, cause); err != nil {
			return err
		}
	}
	return nil
}

// followRoles ends the active grants of user that bindings, the user's
// role bindings after a change, no longer let them hold: a grant needs the
// right to request access in its VM's group and, when its source is not
// the address its request came from, the right to request for any source.
// Each ended grant is one event with why and cause. It returns how many
// ended and bumps the revision of their VMs.
func (c *Control) followRoles(tx store.Tx, a *Actor, user string, bindings []jit.RoleBinding, why string, cause any) (int, error) {
	active, err := tx.ListGrants(store.GrantFilter{User: user, Status: jit.GrantActive})
	if err != nil {
		return 0, err
	}
	var from map[string]string // request id -> the address it came from, read when needed
	n, bumped := 0, map[string]bool{}
	for _, g := range active {
		if jit.Can(bindings, jit.PermRequest, g.Group) {
			if jit.Can(bindings, jit.PermRequestAnySource, g.Group) {
				continue
			}
			if from == nil {
				if from, err = requestAddresses(tx, user); err != nil {
					return n, err
				}
			}
			if own, err := jit.ParsePrefix(from[g.RequestID]); err == nil && own.String() == g.Source {
				continue
			}
		}
		vm := jit.VM{ID: g.VMID, Name: g.VMName, Group: g.Group}
		if err := c.endGrant(tx, a, vm, g, jit.GrantRevoked, why, cause); err != nil {
			return n, err
		}
		n++
		if !bumped[g.VMID] {
			bumped[g.VMID] = true
			if err := tx.BumpRevision(g.VMID); err != nil && jit.ErrorCode(err) != jit.ENotFound {
				return n, err
			}
		}
	}
	return n, nil
}

// requestAddresses returns the address each of user's recent requests came
// from, by request id: those of grants still active (at most a day old).
func requestAddresses(tx store.Tx, user string) (map[string]string, error) {
	reqs, err := tx.ListRequests(store.RequestFilter{User: user, Limit: 10000})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range reqs {
		out[r.ID] = r.Address
	}
	return out, nil
}

// Revoke ends a grant early. Requesters may revoke their own grants;
// jit-admins and admins anyone's in their groups. A grant that has
// already ended is returned as it is, unchanged: its status, EndedBy and
// EndedAt say how it ended (revoking twice is not an error).
func (c *Control) Revoke(ctx context.Context, a *Actor, id string) (jit.Grant, error) {
	var out jit.Grant
	err := c.store.Update(ctx, func(tx store.Tx) error {
		g, err := tx.GetGrant(id)
		if err != nil {
			return err
		}
		vm, err := getVM(tx, a, g.VMID)
		if jit.ErrorCode(err) == jit.ENotFound {
			vm = jit.VM{ID: g.VMID, Name: g.VMName, Group: g.Group}
			if !a.Can(jit.PermRead, g.Group) {
				return jit.Errorf(jit.ENotFound, "grant %s not found", id)
			}
		} else if err != nil {
			return err
		}
		own := g.User == a.Name() && a.Can(jit.PermRequest, g.Group)
		if !own && !a.Can(jit.PermRevokeAny, g.Group) {
			return jit.Errorf(jit.EForbidden, "%s may not revoke grants of other users in group %s", a.Name(), g.Group)
		}
		if g.Status != jit.GrantActive || !g.EndTime.After(c.Now()) {
			// Already ended (a second click, a retry, or its time ran out):
			// the caller gets its state, which is what it wanted to know.
			if g.Status == jit.GrantActive {
				g.Status = jit.GrantExpired // ended by time; the expirer writes it soon
			}
			out = g
			return nil
		}
		if err := c.endGrant(tx, a, vm, g, jit.GrantRevoked, "revoked by "+a.Name(), nil); err != nil {
			return err
		}
		if err := tx.BumpRevision(g.VMID); err != nil && jit.ErrorCode(err) != jit.ENotFound {
			return err
		}
		out, err = tx.GetGrant(id)
		return err
	})
	return out, err
}

// GrantListFilter selects grants for ListGrants.
type GrantListFilter struct {
	VMID   string
	Status string
	User   string
	Limit  int    // page size: 0 for 1,000, at most MaxPage
	Cursor string // the Next of the page before
}

// ListGrants lists one page of the grants in the groups the actor may
// read, newest first, and the cursor of the next page ("" after the last).
func (c *Control) ListGrants(ctx context.Context, a *Actor, f GrantListFilter) ([]jit.Grant, string, error) {
	switch f.Status {
	case "", jit.GrantActive, jit.GrantExpired, jit.GrantRevoked, jit.GrantSuperseded:
	default:
		return nil, "", jit.Invalid("status", "status must be active, expired, revoked or superseded, got %q", f.Status)
	}
	limit, err := pageLimit(f.Limit, 1000, MaxPage)
	if err != nil {
		return nil, "", err
	}
	sf := store.GrantFilter{VMID: f.VMID, Status: f.Status, User: f.User, Groups: a.readGroups(), Limit: limit + 1}
	var start int64
	if err := decodeCursor(f.Cursor, "grants", &start, &sf.BeforeID); err != nil {
		return nil, "", err
	}
	if f.Cursor != "" {
		sf.BeforeStart = time.Unix(0, start)
	}
	var out []jit.Grant
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListGrants(sf)
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	return out, encodeCursor("grants", last.StartTime.UnixNano(), last.ID), nil
}

// RequestListFilter selects requests for ListRequests.
type RequestListFilter struct {
	User   string
	Limit  int    // page size: 0 for 1,000, at most MaxPage
	Cursor string // the Next of the page before
}

// ListRequests lists one page of requests, newest first: all of them for
// readers of every group, otherwise the actor's own; and the cursor of the
// next page ("" after the last).
func (c *Control) ListRequests(ctx context.Context, a *Actor, f RequestListFilter) ([]jit.Request, string, error) {
	if !a.Can(jit.PermRead, "") {
		if f.User != "" && f.User != a.Name() {
			return nil, "", jit.Errorf(jit.EForbidden, "%s may list only their own requests", a.Name())
		}
		f.User = a.Name()
	}
	limit, err := pageLimit(f.Limit, 1000, MaxPage)
	if err != nil {
		return nil, "", err
	}
	sf := store.RequestFilter{User: f.User, Limit: limit + 1}
	var created int64
	if err := decodeCursor(f.Cursor, "requests", &created, &sf.BeforeID); err != nil {
		return nil, "", err
	}
	if f.Cursor != "" {
		sf.BeforeCreated = time.Unix(0, created)
	}
	var out []jit.Request
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListRequests(sf)
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	return out, encodeCursor("requests", last.CreatedAt.UnixNano(), last.ID), nil
}

// remaining is the whole seconds from now to end, rounded to the nearest:
// kernel timeouts count whole seconds, so a grant ends within half a
// second of its end time.
func remaining(end, now time.Time) int64 {
	d := end.Sub(now)
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second/2) / time.Second)
}
