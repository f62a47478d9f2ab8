package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ajarhq/ajar/internal/jit"
)

// Bounds on what a refusal adds to the activity log. What a caller sent
// is logged so the log shows what was refused, but only this much of it:
// a string as long as the longest field ajar keeps (a justification), a
// few items of each list, and a few KiB in all.
const (
	MaxLoggedString  = jit.MaxJustification
	MaxLoggedItems   = 16
	MaxLoggedDetails = 16 << 10
)

// boundDetails returns details as JSON of at most MaxLoggedDetails bytes:
// strings longer than MaxLoggedString are cut (saying from how long),
// lists keep their first MaxLoggedItems items (saying how many more there
// were). When that is still too much, tighter cuts follow; at worst only
// the short top-level values remain.
func boundDetails(details map[string]any) json.RawMessage {
	b, err := json.Marshal(details)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"marshalError": err.Error()})
	}
	if len(b) <= MaxLoggedString { // then no string in it is longer
		return b
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return json.RawMessage(`{"error":"details could not be logged"}`)
	}
	for _, lim := range []struct{ str, items int }{{MaxLoggedString, MaxLoggedItems}, {128, 4}, {64, 0}} {
		out, _ := json.Marshal(cutValue(v, lim.str, lim.items, 0))
		if len(out) <= MaxLoggedDetails {
			return out
		}
	}
	return json.RawMessage(`{"error":"details too large to log"}`)
}

// cutValue returns v (decoded JSON) with strings cut to maxStr bytes and
// lists to maxItems items; below depth 8 nothing is kept.
func cutValue(v any, maxStr, maxItems, depth int) any {
	if depth > 8 {
		return "…(nested too deep)"
	}
	switch x := v.(type) {
	case string:
		return cutString(x, maxStr)
	case []any:
		if len(x) > maxItems {
			out := make([]any, 0, maxItems+1)
			for _, e := range x[:maxItems] {
				out = append(out, cutValue(e, maxStr, maxItems, depth+1))
			}
			return append(out, fmt.Sprintf("…(%d more)", len(x)-maxItems))
		}
		for i, e := range x {
			x[i] = cutValue(e, maxStr, maxItems, depth+1)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[cutString(k, maxStr)] = cutValue(e, maxStr, maxItems, depth+1)
		}
		return out
	}
	return v
}

// cutString returns s cut to at most max bytes on a character boundary,
// followed by a note of its length when it was cut.
func cutString(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s…(cut from %d bytes)", s[:n], len(s))
}

// Refusals a principal can cause are limited per principal by a token
// bucket: a burst of RefusalBurst, then one every RefusalEvery. Past it the
// caller gets 429 with Retry-After and the log gets one summary event
// instead of an event per refusal; the next logged refusal says how many
// went unlogged.
const (
	RefusalBurst = 30
	RefusalEvery = 10 * time.Second
	// maxBuckets bounds the limiter's memory; full buckets go first.
	maxBuckets = 100000
)

type bucket struct {
	tokens     float64
	last       time.Time
	unlogged   int  // refusals not logged since the last logged one
	summarized bool // the summary of this limited stretch is logged
}

// buckets are token buckets per key. They live in memory: each replica
// limits on its own, and a restart forgets.
type buckets struct {
	burst float64
	every time.Duration

	mu sync.Mutex
	m  map[string]*bucket
}

func newBuckets(burst int, every time.Duration) *buckets {
	return &buckets{burst: float64(burst), every: every, m: map[string]*bucket{}}
}

// take takes a token for key at now. When none is left it reports false
// and how long until one is. A full table counts as no token left.
func (bs *buckets) take(key string, now time.Time) (b bucket, ok bool, retry time.Duration) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	p := bs.m[key]
	if p == nil {
		if len(bs.m) >= maxBuckets {
			bs.prune(now)
		}
		if len(bs.m) >= maxBuckets {
			return bucket{}, false, bs.every
		}
		p = &bucket{tokens: bs.burst, last: now}
		bs.m[key] = p
	}
	bs.refill(p, now)
	if p.tokens < 1 {
		retry = time.Duration((1 - p.tokens) * float64(bs.every))
		before := *p
		p.unlogged++
		p.summarized = true
		return before, false, retry
	}
	p.tokens--
	before := *p
	p.unlogged, p.summarized = 0, false
	return before, true, 0
}

func (bs *buckets) refill(p *bucket, now time.Time) {
	if el := now.Sub(p.last); el > 0 {
		p.tokens = min(bs.burst, p.tokens+float64(el)/float64(bs.every))
	}
	p.last = now
}

// prune drops buckets that are full again (their key has been quiet).
func (bs *buckets) prune(now time.Time) {
	for k, p := range bs.m {
		bs.refill(p, now)
		if p.tokens >= bs.burst && p.unlogged == 0 {
			delete(bs.m, k)
		}
	}
}

// principal is the key the refusal limit counts a for: its user or agent,
// or its address (a /64 for IPv6) when it has no token.
func principal(a *Actor) string {
	if a != nil && a.Token.ID != "" {
		return "actor:" + a.Name()
	}
	var addr netip.Addr
	if a != nil {
		addr = a.Address
	}
	return "addr:" + AddrKey(addr)
}

// AddrKey is the key limits count an address under: IPv6 hosts usually
// hold a whole /64, so it counts as one.
func AddrKey(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.Unmap().String()
}
