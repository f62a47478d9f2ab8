package control

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// expireBatch bounds how many grants one expiry transaction ends.
const expireBatch = 500

// RunExpirer ends grants at their end time until ctx ends: it sleeps until
// the earliest end time of the active grants (no periodic scan), wakes when
// a committed change (here or on another server) may bring an earlier one,
// and at start ends everything already past its end, with its real end
// time.
func (c *Control) RunExpirer(ctx context.Context) error {
	changes := c.store.Changes(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	expire := true // at start: end what ended while we were stopped
	for {
		wait := time.Hour
		if expire {
			if _, err := c.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("expire grants", "err", err)
				wait = time.Second // retry soon
			}
		}
		if wait == time.Hour {
			var next time.Time
			var ok bool
			err := c.store.View(ctx, func(tx store.Tx) error {
				var err error
				next, ok, err = tx.NextGrantEnd()
				return err
			})
			switch {
			case err != nil:
				wait = time.Second
			case ok:
				wait = max(0, next.Sub(c.Now()))
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			expire = true
		case <-changes:
			// A change (here or on another server) may bring an earlier
			// end time; take every change already waiting at once.
			expire = false
			for drained := false; !drained; {
				select {
				case <-changes:
				default:
					drained = true
				}
			}
		}
	}
}

// ExpireDue ends every active grant whose end time has passed and returns
// how many it ended. Each grant's transition happens once even when several
// servers race: EndGrant changes only active grants.
func (c *Control) ExpireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := c.store.Update(ctx, func(tx store.Tx) error {
			n = 0
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
