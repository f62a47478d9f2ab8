package store

import (
	"context"
	"sync"
)

// AllVMs is delivered on a Changes channel when changes were dropped
// because the reader fell behind: treat every VM as changed.
const AllVMs = "*"

// Feed fans committed VM changes out to subscribers. Adapters publish to
// it; Store.Changes subscribes.
type Feed struct {
	mu   sync.Mutex
	subs map[chan string]struct{}
}

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
