package control

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// EventListFilter selects activity events.
type EventListFilter struct {
	VMID  string
	Actor string
	// ActorPrefix keeps the events whose actor starts with it.
	ActorPrefix string
	Operation   string
	Since       time.Time
	Until       time.Time
	AfterSeq    int64 // paging: events after (or, with Desc, before) this one
	Limit       int   // page size: 0 for 1,000, at most MaxEventPage
	Desc        bool
	// Cursor is the Next of the page before (it holds AfterSeq and Desc).
	Cursor string
}

// MaxEventPage bounds one page of events.
const MaxEventPage = 10000

// ListEvents returns one page of the activity events the actor may read,
// and the cursor of the next page ("" after the last).
func (c *Control) ListEvents(ctx context.Context, a *Actor, f EventListFilter) ([]jit.Event, string, error) {
	if err := a.require(jit.PermRead, a.anyGroup(), "read the activity log"); err != nil {
		return nil, "", err
	}
	limit, err := pageLimit(f.Limit, 1000, MaxEventPage)
	if err != nil {
		return nil, "", err
	}
	if err := decodeCursor(f.Cursor, "events", &f.AfterSeq, &f.Desc); err != nil {
		return nil, "", err
	}
	var out []jit.Event
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListEvents(c.eventFilter(a, f, limit+1))
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	return out, encodeCursor("events", out[limit-1].Seq, f.Desc), nil
}

func (c *Control) eventFilter(a *Actor, f EventListFilter, limit int) store.EventFilter {
	return store.EventFilter{VMID: f.VMID, Actor: f.Actor, ActorPrefix: f.ActorPrefix, Operation: f.Operation, Since: f.Since, Until: f.Until,
		AfterSeq: f.AfterSeq, Limit: limit, Desc: f.Desc, Groups: a.readGroups()}
}

// exportChunk is how many events an export reads per transaction.
const exportChunk = 1000

// ExportEvents calls fn with every activity event the actor may read that
// f selects, in sequence order (f.Limit, when set, is the most to export;
// f.Desc is ignored). It reads them chunk by chunk, each in a transaction
// of its own, so that memory stays that of one chunk however long the log
// is; it stops at the log's head as it was when the export began.
func (c *Control) ExportEvents(ctx context.Context, a *Actor, f EventListFilter, fn func(*jit.Event) error) error {
	if err := a.require(jit.PermRead, a.anyGroup(), "read the activity log"); err != nil {
		return err
	}
	if f.Limit < 0 {
		return jit.Invalid("limit", "limit must not be negative, got %d", f.Limit)
	}
	var head int64
	err := c.store.View(ctx, func(tx store.Tx) error {
		last, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
		if len(last) == 1 {
			head = last[0].Seq
		}
		return err
	})
	if err != nil {
		return err
	}
	f.Desc = false
	left := f.Limit
	for f.AfterSeq < head {
		n := exportChunk
		if f.Limit > 0 {
			n = min(n, left)
		}
		var chunk []jit.Event
		err := c.store.View(ctx, func(tx store.Tx) error {
			var err error
			chunk, err = tx.ListEvents(c.eventFilter(a, f, n))
			return err
		})
		if err != nil {
			return err
		}
		for i := range chunk {
			if chunk[i].Seq > head {
				return nil
			}
			if err := fn(&chunk[i]); err != nil {
				return err
			}
		}
		if len(chunk) < n {
			return nil
		}
		if f.Limit > 0 {
			if left -= len(chunk); left == 0 {
				return nil
			}
		}
		f.AfterSeq = chunk[len(chunk)-1].Seq
	}
	return nil
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
	return VerifyLog(ctx, c.store, anchor)
}

// VerifyLog walks the hash chain of the activity log in st, from its
// checkpoint when events were archived, for tools that hold the database
// itself (ajard backup and restore); anchor, when set, is an event
// recorded earlier that the chain (or, before the checkpoint, the
// archives) must still hold.
func VerifyLog(ctx context.Context, st store.Store, anchor *jit.Anchor) (jit.Verification, error) {
	v := jit.ChainVerifier{Anchor: anchor}
	var archived *jit.Anchor
	anchorArchived := false
	err := st.View(ctx, func(tx store.Tx) error {
		cp, ok, err := tx.LogCheckpoint()
		if err != nil {
			return err
		}
		if ok {
			archived, v.Start = &cp, &cp
			if anchor != nil && anchor.Seq <= cp.Seq {
				// The archive files hold the anchor (ajar log verify
				// --archive checks it there); the checkpoint itself is
				// checked here.
				anchorArchived = anchor.Seq < cp.Seq
				if anchor.Seq == cp.Seq && anchor.Hash != cp.Hash {
					v.BadSeq, v.Problem = cp.Seq, "the archived event "+cp.String()+" does not match the anchor "+anchor.String()+": the log was rewritten from here on"
				}
				v.Anchor = nil
			}
		}
		return tx.WalkEvents(v.Add)
	})
	v.Finish()
	out := jit.Verification{OK: v.BadSeq == 0, Events: v.Events, ArchivedThrough: archived, AnchorArchived: anchorArchived}
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
