package control

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// EventListFilter selects activity events.
type EventListFilter struct {
	VMID      string
	Actor     string
	Operation string
	Since     time.Time
	Until     time.Time
	AfterSeq  int64 // paging: events after (or, with Desc, before) this one
	Limit     int
	Desc      bool
}

// MaxEventPage bounds one page of events.
const MaxEventPage = 10000

// ListEvents returns activity events the actor may read.
func (c *Control) ListEvents(ctx context.Context, a *Actor, f EventListFilter) ([]jit.Event, error) {
	if err := a.require(jit.PermRead, a.anyGroup(), "read the activity log"); err != nil {
		return nil, err
	}
	if f.Limit <= 0 || f.Limit > MaxEventPage {
		f.Limit = MaxEventPage
	}
	var out []jit.Event
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListEvents(store.EventFilter{VMID: f.VMID, Actor: f.Actor, Operation: f.Operation, Since: f.Since, Until: f.Until,
			AfterSeq: f.AfterSeq, Limit: f.Limit, Desc: f.Desc, Groups: a.readGroups()})
		return err
	})
	return out, err
}

// anyGroup returns a group the actor may read in, so that permission
// checks pass for readers of some groups only.
func (a *Actor) anyGroup() string {
	if a == nil {
		return ""
	}
	for _, b := range jit.Bindings(a.Bindings, jit.PermRead) {
		if b.Group != jit.AllGroups {
			return b.Group
		}
	}
	return ""
}

// Verify walks the whole hash chain of the activity log.
func (c *Control) Verify(ctx context.Context, a *Actor) (jit.Verification, error) {
	return c.VerifyAnchored(ctx, a, nil)
}

// VerifyAnchored walks the chain and also checks that it still holds an
// event recorded earlier (the head of an earlier verification), which
// catches a log rewritten or cut off after that point.
func (c *Control) VerifyAnchored(ctx context.Context, a *Actor, anchor *jit.Anchor) (jit.Verification, error) {
	if err := a.require(jit.PermRead, a.anyGroup(), "verify the activity log"); err != nil {
		return jit.Verification{}, err
	}
	v := jit.ChainVerifier{Anchor: anchor}
	err := c.store.View(ctx, func(tx store.Tx) error { return tx.WalkEvents(v.Add) })
	v.Finish()
	out := jit.Verification{OK: v.BadSeq == 0, Events: v.Events}
	if v.Head.Seq > 0 {
		head := v.Head
		out.Head = &head
	}
	if v.BadSeq != 0 {
		bad := v.BadSeq
		out.FirstBadEvent, out.Problem = &bad, v.Problem
	}
	return out, err
}

// RunHeadLog writes the activity log's head (sequence number and hash) to
// the server's own log every interval, until ctx ends: shipped off the
// host with the logs, these lines are anchors that `ajar log verify
// --anchor` can check the database against later.
func (c *Control) RunHeadLog(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	last := int64(-1)
	for {
		var head []jit.Event
		err := c.store.View(ctx, func(tx store.Tx) error {
			var err error
			head, err = tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
			return err
		})
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Error("read the activity log head", "err", err)
		case len(head) == 1 && head[0].Seq != last:
			last = head[0].Seq
			c.log.Info("activity log head", "anchor", jit.Anchor{Seq: head[0].Seq, Hash: head[0].Hash}.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
