package control

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Archiving moves the oldest part of the activity log out of the store
// without losing the proof: an admin downloads the events before a date
// (ExportArchive), keeps them, and only then confirms (ConfirmArchive);
// the store removes them and keeps the last one's sequence number and
// hash as its checkpoint, which the first event left in the log links to.
// Nothing refers to events by their sequence number (grants and requests
// keep their own rows), so removing them changes nothing else.

// ExportArchive calls fn with the events an archive cut at before takes:
// the log from its start (or its checkpoint) up to the first event at or
// after before, in sequence order, chunk by chunk. Admins only.
func (c *Control) ExportArchive(ctx context.Context, a *Actor, before time.Time, fn func(*jit.Event) error) error {
	if err := a.require(jit.PermAdmin, "", "archive the activity log"); err != nil {
		return err
	}
	if before.IsZero() {
		return jit.Invalid("before", "before is required: the date the archive ends at")
	}
	return c.exportArchive(ctx, before, fn)
}

func (c *Control) exportArchive(ctx context.Context, before time.Time, fn func(*jit.Event) error) error {
	// Read the log in sequence order from its start and stop at the first
	// event at or after before: the cost is that of the events archived
	// (an index on time would read every event after before, to sort).
	var from, head int64
	err := c.store.View(ctx, func(tx store.Tx) error {
		cp, _, err := tx.LogCheckpoint()
		if err != nil {
			return err
		}
		from = cp.Seq
		last, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
		if len(last) == 1 {
			head = last[0].Seq
		}
		return err
	})
	if err != nil {
		return err
	}
	for from < head {
		var chunk []jit.Event
		err := c.store.View(ctx, func(tx store.Tx) error {
			var err error
			chunk, err = tx.ListEvents(store.EventFilter{AfterSeq: from, Limit: int(min(exportChunk, head-from))})
			return err
		})
		if err != nil {
			return err
		}
		if len(chunk) == 0 {
			return nil
		}
		for i := range chunk {
			if !chunk[i].Time.Before(before) {
				return nil
			}
			if err := fn(&chunk[i]); err != nil {
				return err
			}
		}
		from = chunk[len(chunk)-1].Seq
	}
	return nil
}

// ConfirmArchive removes the events up to in.Through from the log, once
// the caller holds them in an archive file, and logs that it did, in one
// transaction. Admins only.
func (c *Control) ConfirmArchive(ctx context.Context, a *Actor, in jit.ArchiveConfirm) (jit.Archived, error) {
	if err := a.require(jit.PermAdmin, "", "archive the activity log"); err != nil {
		return jit.Archived{}, err
	}
	if in.Through.Seq < 1 {
		return jit.Archived{}, jit.Invalid("through.seq", "through.seq must be the sequence number of the last archived event (1 or more), got %d", in.Through.Seq)
	}
	if _, err := jit.ParseAnchor(in.Through.String()); err != nil {
		return jit.Archived{}, jit.Invalid("through.hash", "through.hash must be the 64 hex digits of the last archived event's hash")
	}
	return c.confirmArchive(ctx, a, in)
}

// confirmArchive is ConfirmArchive for a caller whose permission was
// checked (nil: ajard's own retention).
func (c *Control) confirmArchive(ctx context.Context, a *Actor, in jit.ArchiveConfirm) (jit.Archived, error) {
	if in.From < 1 || in.From > in.Through.Seq {
		return jit.Archived{}, jit.Invalid("from", "from must be the first archived event's sequence number, from 1 to through.seq (%d), got %d", in.Through.Seq, in.From)
	}
	var out jit.Archived
	err := c.store.Update(ctx, func(tx store.Tx) error {
		cp, _, err := tx.LogCheckpoint()
		if err != nil {
			return err
		}
		if in.From != cp.Seq+1 {
			return jit.Errorf(jit.EConflict, "the log starts at event %d, not %d: the archive must hold every event up to through", cp.Seq+1, in.From)
		}
		n, err := tx.ArchiveEvents(in.Through, c.Now(), a.Name())
		if err != nil {
			return err
		}
		out = jit.Archived{Removed: n, ArchivedThrough: in.Through}
		details := map[string]any{"archivedThrough": in.Through.String(), "removed": n}
		if !in.Before.IsZero() {
			details["before"] = in.Before.UTC()
		}
		return tx.AppendEvent(c.event(a, jit.OpLogArchive, jit.OutcomeSuccess, nil, details))
	})
	if err != nil {
		return jit.Archived{}, err
	}
	c.log.Info("archived activity events", "removed", out.Removed, "through", out.ArchivedThrough.String(), "by", a.Name())
	return out, nil
}

// FollowPoll is how often a follower of the log looks for new events.
const FollowPoll = 250 * time.Millisecond

// FollowEvents calls fn with the events f selects that the actor may
// read, from f.AfterSeq on, in sequence order, a batch at a time as they
// commit, until ctx ends or fn fails. Events commit in sequence order
// (one writer at a time holds the log's head), so a follower that resumes
// after the last sequence number it got misses none.
func (c *Control) FollowEvents(ctx context.Context, a *Actor, f EventListFilter, fn func([]jit.Event) error, idle func() error) error {
	if err := a.require(jit.PermRead, a.anyGroup(), "read the activity log"); err != nil {
		return err
	}
	f.Desc, f.Limit = false, exportChunk
	t := time.NewTicker(FollowPoll)
	defer t.Stop()
	for {
		var batch []jit.Event
		var head int64
		err := c.store.View(ctx, func(tx store.Tx) error {
			last, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
			if err != nil || len(last) == 0 {
				return err
			}
			head = last[0].Seq
			batch, err = tx.ListEvents(c.eventFilter(a, f, exportChunk))
			return err
		})
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := fn(batch); err != nil {
				return err
			}
			f.AfterSeq = batch[len(batch)-1].Seq
		}
		if len(batch) == exportChunk {
			continue // more are waiting
		}
		// The snapshot held no more matching events up to its head.
		f.AfterSeq = max(f.AfterSeq, head)
		if err := idle(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.Draining(): // the server stops: end the stream, the client resumes after its last seq
			return nil
		case <-t.C:
		}
	}
}
