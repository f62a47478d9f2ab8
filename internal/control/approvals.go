package control

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Approvals: a request for VMs whose policy has an approval rule waits,
// pending, until enough distinct approvers of the VMs' group other than
// the requester approve it (its grants open then, their durations counted
// from then), one denies it, its requester cancels it, or its wait ends.

// holdRequest writes req as pending on plan p, instead of opening grants.
func (c *Control) holdRequest(tx store.Tx, a *Actor, r jit.AccessRequest, req *jit.Request, p plan) error {
	until := req.CreatedAt.Add(p.lifetime)
	asked := r
	asked.Justification = req.Justification
	req.Status, req.Group, req.Required, req.Asked, req.ExpiresAt = jit.RequestPending, p.group, p.required, &asked, &until
	if err := tx.CreateRequest(*req); err != nil {
		return err
	}
	return tx.AppendEvent(c.event(a, jit.OpRequestPending, jit.OutcomeSuccess, requestVM(p), map[string]any{
		"request": req.ID, "justification": req.Justification, "required": req.Required, "expiresAt": until, "asked": asked}))
}

// requestVM is what a request's events are logged against: its VM when it
// names one, else its group.
func requestVM(p plan) *jit.VM {
	if len(p.vms) == 1 {
		return &p.vms[0].vm
	}
	return &jit.VM{Group: p.group}
}

// GetRequest returns a request: to its requester, and to those who may
// read its group (or, for requests made without approval, every group).
func (c *Control) GetRequest(ctx context.Context, a *Actor, id string) (jit.Request, error) {
	var r jit.Request
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		r, err = tx.GetRequest(id)
		return err
	})
	if err != nil {
		return jit.Request{}, err
	}
	if r.User != a.Name() && !a.Can(jit.PermRead, r.Group) {
		return jit.Request{}, jit.Errorf(jit.ENotFound, "request %s not found", id)
	}
	return r, nil
}

// ListPending returns one page of the pending requests the actor may
// decide: those in groups where they hold the approver role, other than
// their own, still waiting; the soonest to expire first (limit 0:
// DefaultPage, at most MaxPage), and the next page's cursor ("" after
// the last).
func (c *Control) ListPending(ctx context.Context, a *Actor, limit int, cursor string) ([]jit.Request, string, error) {
	limit, err := pageLimit(limit, DefaultPage, MaxPage)
	if err != nil {
		return nil, "", err
	}
	now := c.Now()
	f := store.RequestFilter{Status: jit.RequestPending, PendingBy: now.Add(jit.MaxPendingLifetime), AfterPending: now,
		NotUser: a.Name(), Limit: limit + 1}
	var after int64
	if err := decodeCursor(cursor, "pending", &after, &f.AfterID); err != nil {
		return nil, "", err
	}
	if cursor != "" {
		f.AfterPending = time.Unix(0, after).UTC()
	}
	groups, all := jit.Groups(a.Bindings, jit.PermApprove)
	if a.Token.Kind != jit.TokenUser || (!all && len(groups) == 0) {
		return []jit.Request{}, "", nil
	}
	if !all {
		f.Groups = groups
	}
	var out []jit.Request
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListRequests(f)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = encodeCursor("pending", last.ExpiresAt.UnixNano(), last.ID)
	}
	// A wait ending exactly now has ended (the query keeps it).
	waiting := out[:0]
	for _, r := range out {
		if r.ExpiresAt != nil && r.ExpiresAt.After(now) {
			waiting = append(waiting, r)
		}
	}
	return waiting, next, nil
}

// Approve records the actor's approval of a pending request; with the
// approvals its policy requires, the request's grants open, checked again
// against the policies and the requester's roles as they are now, their
// durations counted from now.
func (c *Control) Approve(ctx context.Context, a *Actor, id, reason string) (jit.Request, error) {
	return c.decide(ctx, a, id, reason, true)
}

// Deny refuses a pending request, with the reason the requester sees.
func (c *Control) Deny(ctx context.Context, a *Actor, id, reason string) (jit.Request, error) {
	return c.decide(ctx, a, id, reason, false)
}

func (c *Control) decide(ctx context.Context, a *Actor, id, reason string, approve bool) (jit.Request, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > jit.MaxDecisionReason {
		return jit.Request{}, jit.Invalid("reason", "reason is longer than %d bytes", jit.MaxDecisionReason)
	}
	if !approve && reason == "" {
		return jit.Request{}, jit.Invalid("reason", "a denial needs a reason")
	}
	var out jit.Request
	err := c.store.Update(ctx, func(tx store.Tx) error {
		r, err := c.pendingFor(tx, a, id)
		if err != nil {
			return err
		}
		if r.User == a.Name() {
			return jit.Errorf(jit.EForbidden, "%s may not decide their own request", a.Name())
		}
		if !a.Can(jit.PermApprove, r.Group) {
			return jit.Errorf(jit.EForbidden, "%s may not decide requests in group %s (role approver needed)", a.Name(), r.Group)
		}
		approvals := 0
		for _, d := range r.Decisions {
			if d.User == a.Name() {
				return jit.Errorf(jit.EConflict, "%s has already decided request %s", a.Name(), id)
			}
			if d.Approve {
				approvals++
			}
		}
		now := c.Now()
		r.Decisions = append(r.Decisions, jit.Decision{User: a.Name(), Approve: approve, Reason: reason, Time: now})
		details := map[string]any{"request": r.ID, "user": r.User, "reason": reason}
		vm := &jit.VM{Group: r.Group}
		if len(r.Asked.VirtualMachines) == 1 {
			vm.ID = r.Asked.VirtualMachines[0].ID
		}
		switch {
		case !approve:
			r.Status, r.DecidedAt = jit.RequestDenied, &now
			if err := c.setState(tx, r); err != nil {
				return err
			}
			out = r
			return tx.AppendEvent(c.event(a, jit.OpRequestDeny, jit.OutcomeSuccess, vm, details))
		case approvals+1 < r.Required:
			if err := c.setState(tx, r); err != nil {
				return err
			}
			out = r
			details["approvals"], details["required"] = approvals+1, r.Required
			return tx.AppendEvent(c.event(a, jit.OpRequestApproval, jit.OutcomeSuccess, vm, details))
		}
		who, err := requesterOf(tx, r)
		if err != nil {
			return err
		}
		p, _, err := c.planGrants(tx, who, *r.Asked, r.ID, now)
		if err != nil {
			return jit.Errorf(jit.EConflict, "request %s cannot open now: %s", id, jit.ErrorMessage(err))
		}
		r.Status, r.DecidedAt = jit.RequestApproved, &now
		if err := c.openPlanned(tx, a, p, &r, &r); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return jit.Request{}, err
	}
	for _, g := range out.Grants {
		c.noteEnd(g.EndTime)
	}
	return out, nil
}

// Cancel withdraws the actor's own pending request.
func (c *Control) Cancel(ctx context.Context, a *Actor, id string) (jit.Request, error) {
	var out jit.Request
	err := c.store.Update(ctx, func(tx store.Tx) error {
		r, err := c.pendingFor(tx, a, id)
		if err != nil {
			return err
		}
		if r.User != a.Name() {
			return jit.Errorf(jit.EForbidden, "%s may cancel only their own requests", a.Name())
		}
		now := c.Now()
		r.Status, r.DecidedAt = jit.RequestCancelled, &now
		if err := c.setState(tx, r); err != nil {
			return err
		}
		out = r
		return tx.AppendEvent(c.event(a, jit.OpRequestCancel, jit.OutcomeSuccess, &jit.VM{Group: r.Group}, map[string]any{"request": r.ID}))
	})
	return out, err
}

// pendingFor reads a request the actor may see and checks it is pending
// and still waiting.
func (c *Control) pendingFor(tx store.Tx, a *Actor, id string) (jit.Request, error) {
	r, err := tx.GetRequest(id)
	if err != nil {
		return r, err
	}
	if r.User != a.Name() && !a.Can(jit.PermRead, r.Group) && !a.Can(jit.PermApprove, r.Group) {
		return r, jit.Errorf(jit.ENotFound, "request %s not found", id)
	}
	if r.Status != jit.RequestPending || r.Asked == nil {
		return r, jit.Errorf(jit.EConflict, "request %s is %s, not pending", id, r.Status)
	}
	if r.ExpiresAt == nil || !r.ExpiresAt.After(c.Now()) {
		return r, jit.Errorf(jit.EConflict, "request %s has expired", id)
	}
	return r, nil
}

// setState writes a pending request's new state; another server's
// decision committed first makes it a conflict.
func (c *Control) setState(tx store.Tx, r jit.Request) error {
	ok, err := tx.SetRequestState(r, jit.RequestPending)
	if err == nil && !ok {
		err = jit.Errorf(jit.EConflict, "request %s is no longer pending", r.ID)
	}
	return err
}

// requesterOf is the requester of r as an actor, with their role bindings
// as they are now and the address the request came from.
func requesterOf(tx store.Tx, r jit.Request) (*Actor, error) {
	bs, err := tx.ListRoleBindings(r.User)
	if err != nil {
		return nil, err
	}
	addr, _ := netip.ParseAddr(r.Address)
	return &Actor{User: r.User, Address: addr, Token: jit.Token{Kind: jit.TokenUser, User: r.User}, Bindings: bs}, nil
}

// expirePending ends the wait of pending requests whose time is up, at
// most expireBatch, and returns how many it ended.
func (c *Control) expirePending(tx store.Tx, now time.Time) (int, error) {
	due, err := tx.ListRequests(store.RequestFilter{PendingBy: now, Limit: expireBatch})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range due {
		at := *r.ExpiresAt
		r.Status, r.DecidedAt = jit.RequestExpired, &at
		ok, err := tx.SetRequestState(r, jit.RequestPending)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		n++
		e := c.event(nil, jit.OpRequestExpire, jit.OutcomeSuccess, &jit.VM{Group: r.Group}, map[string]any{"request": r.ID, "user": r.User, "expiresAt": at})
		if err := tx.AppendEvent(e); err != nil {
			return n, err
		}
	}
	return n, nil
}
