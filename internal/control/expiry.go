package control

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// expireBatch bounds how many grants one expiry transaction ends.
const expireBatch = 500

// refreshEvery bounds how often the expirer re-reads the earliest end time
// because of changes committed elsewhere (another server's grants: that
// server ends them on time itself; this one only backs it up).
const refreshEvery = time.Second

// RunExpirer ends grants at their end time until ctx ends: it sleeps until
// the earliest end time of the active grants (no periodic scan). Grants
// opened here move its timer at once (noteEnd); changes committed by other
// servers make it re-read the earliest end time, at most every
// refreshEvery. At start it ends everything already past its end, with its
// real end time.
func (c *Control) RunExpirer(ctx context.Context) error {
	changes := c.store.Changes(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	refresh := time.NewTimer(time.Hour)
	defer refresh.Stop()
	expire, reread := true, true
	var target, lastRead time.Time
	for {
		if expire {
			if _, err := c.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("expire grants", "err", err)
				target, reread = c.Now().Add(time.Second), false // retry soon
			} else {
				reread = true
			}
		}
		if reread {
			var next time.Time
			var ok bool
			err := c.store.View(ctx, func(tx store.Tx) error {
				var err error
				next, ok, err = tx.NextGrantEnd()
				if err != nil {
					return err
				}
				wait, waiting, err := tx.NextPendingEnd()
				if waiting && (!ok || wait.Before(next)) {
					next, ok = wait, true
				}
				return err
			})
			lastRead = c.Now()
			switch {
			case err != nil:
				target = lastRead.Add(time.Second)
			case ok:
				target = next
			default:
				target = lastRead.Add(time.Hour)
			}
		}
		stopTimer(timer)
		timer.Reset(max(0, target.Sub(c.Now())))
		expire, reread = false, false
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			expire = true
		case <-c.kick:
			if end := c.takeSoonest(); !end.IsZero() && end.Before(target) {
				target = end
			}
		case _, ok := <-changes:
			if !ok {
				return nil
			}
			for drained := false; !drained; { // take every change already waiting
				select {
				case _, ok := <-changes:
					if !ok { // ctx ended meanwhile: the feed closed the channel
						return nil
					}
				default:
					drained = true
				}
			}
			if wait := refreshEvery - c.Now().Sub(lastRead); wait > 0 {
				stopTimer(refresh)
				refresh.Reset(wait)
			} else {
				reread = true
			}
		case <-refresh.C:
			reread = true
		}
	}
}

func stopTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

// noteEnd tells the expirer of a grant opened here that ends at end.
func (c *Control) noteEnd(end time.Time) {
	c.soonestMu.Lock()
	if c.soonest.IsZero() || end.Before(c.soonest) {
		c.soonest = end
	}
	c.soonestMu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Control) takeSoonest() time.Time {
	c.soonestMu.Lock()
	defer c.soonestMu.Unlock()
	t := c.soonest
	c.soonest = time.Time{}
	return t
}

// ExpireDue ends every active grant whose end time has passed, and the
// wait of every pending request whose pending lifetime has, and returns
// how many it ended. Each transition happens once even when several
// servers race: EndGrant changes only active grants, SetRequestState only
// pending requests.
func (c *Control) ExpireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := c.store.Update(ctx, func(tx store.Tx) error {
			var err error
			if n, err = c.expirePending(tx, c.Now()); err != nil {
				return err
			}
			due, err := tx.ListGrants(store.GrantFilter{EndingBy: c.Now(), Limit: expireBatch})
			if err != nil {
				return err
			}
			bumped := map[string]bool{}
			for _, g := range due {
				vm := jit.VM{ID: g.VMID, Name: g.VMName, Group: g.Group}
				ok, err := tx.EndGrant(g.ID, jit.GrantExpired, g.EndTime, "system")
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				n++
				d := grantDetails(g)
				d["endedAt"], d["reason"] = g.EndTime, "end time reached"
				if err := tx.AppendEvent(c.event(nil, jit.OpGrantExpire, jit.OutcomeSuccess, &vm, d)); err != nil {
					return err
				}
				if !bumped[g.VMID] {
					bumped[g.VMID] = true
					if err := tx.BumpRevision(g.VMID); err != nil && jit.ErrorCode(err) != jit.ENotFound {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}
