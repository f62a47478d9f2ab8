package console

import (
	"sync"
	"time"
)

// limiter counts failed sign-ins per key (a user name, an address) in a
// sliding window and says when a key has had too many. It lives in memory:
// each replica limits on its own, and a restart forgets.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // oldest first, at most max entries in the window
}

// maxKeys bounds the memory a flood of distinct keys can take; past it,
// keys whose failures are all out of the window are dropped first.
const maxKeys = 100000

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, now: now, failures: map[string][]time.Time{}}
}

// acquire counts an attempt for key as a failure in advance, unless key
// has reached its limit: then it reports false and when key may try
// again. Counting before the password is checked keeps parallel attempts
// from slipping past the limit; release takes the count back when the
// attempt did not fail.
func (l *limiter) acquire(key string) (at time.Time, ok bool, retry time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.recent(key)
	if len(ts) >= l.max {
		return time.Time{}, false, ts[len(ts)-l.max].Add(l.window)
	}
	at = l.now()
	if _, exists := l.failures[key]; !exists && len(l.failures) >= maxKeys {
		l.prune()
	}
	if _, exists := l.failures[key]; !exists && len(l.failures) >= maxKeys {
		// Full of recent failures for other keys: refuse rather than let
		// attempts go uncounted (an attacker filling the table must not
		// switch the limit off).
		return time.Time{}, false, at.Add(l.window)
	}
	l.failures[key] = append(ts, at)
	return at, true, time.Time{}
}

// release takes back the attempt acquire counted at at.
func (l *limiter) release(key string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.failures[key]
	for i, t := range ts {
		if t.Equal(at) {
			ts = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(l.failures, key)
	} else {
		l.failures[key] = ts
	}
}

// reset forgets key's failures (after a successful sign-in).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// recent returns key's failures inside the window, dropping older ones.
func (l *limiter) recent(key string) []time.Time {
	ts, ok := l.failures[key]
	if !ok {
		return nil
	}
	cut := l.now().Add(-l.window)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	if i == len(ts) {
		delete(l.failures, key)
		return nil
	}
	ts = ts[i:]
	l.failures[key] = ts
	return ts
}

func (l *limiter) prune() {
	cut := l.now().Add(-l.window)
	for k, ts := range l.failures {
		if len(ts) == 0 || !ts[len(ts)-1].After(cut) {
			delete(l.failures, k)
		}
	}
}
