package store

import (
	"context"
	"sync"
	"sync/atomic"
)

// AllVMs is delivered on a Changes channel when changes were dropped
// because the reader fell behind: treat every VM as changed.
const AllVMs = "*"

// AuthChange is announced between servers (never delivered on a Changes
// channel) by a transaction that may have changed how a token
// authenticates: a token or a user deleted, a role binding made or
// removed.
const AuthChange = "!auth"

// Feed fans committed VM changes out to subscribers. Adapters publish to
// it; Store.Changes subscribes.
type Feed struct {
	mu   sync.Mutex
	subs map[chan string]struct{}
	auth atomic.Uint64
}

// AuthChanged moves the authentication generation on: adapters call it
// when a transaction committed here may have changed how a token
// authenticates (before its Update returns), when another server
// announces such a change, and when they may have missed announcements.
func (f *Feed) AuthChanged() { f.auth.Add(1) }

// AuthGeneration implements Store.AuthGeneration.
func (f *Feed) AuthGeneration() uint64 { return f.auth.Load() }

// Subscribe returns a channel of changed VM ids that closes when ctx ends.
func (f *Feed) Subscribe(ctx context.Context) <-chan string {
	ch := make(chan string, 1024)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan string]struct{}{}
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
		close(ch)
	})
	return ch
}

// Publish delivers ids to every subscriber without blocking; a subscriber
// whose buffer is full gets AllVMs instead when room frees up.
func (f *Feed) Publish(ids ...string) {
	if len(ids) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		for _, id := range ids {
			select {
			case ch <- id:
			default:
				// Full: make the oldest slot say "everything changed".
				select {
				case <-ch:
				default:
				}
				select {
				case ch <- AllVMs:
				default:
				}
			}
		}
	}
}
