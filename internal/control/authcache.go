package control

import (
	"slices"
	"sync"

	"github.com/ajarhq/ajar/internal/jit"
)

// authCache keeps what Authenticate read of tokens (the token and its
// user's role bindings), by the token's hash, under the store's
// authentication generation: an entry is used only while the generation
// it was read under is current, so a token deleted or a binding changed
// (here, before the change's Update returned, or on another replica, as
// soon as this one hears of it) is read again. Expiry is checked at every
// use. Tokens with uses (enrollment) and one-time tokens are not kept.
// Agents and API clients then authenticate without a database read.
type authCache struct {
	mu      sync.Mutex
	entries map[string]authEntry
}

type authEntry struct {
	gen      uint64
	token    jit.Token
	bindings []jit.RoleBinding
}

// authCacheMax bounds the entries; past it the cache starts over.
const authCacheMax = 100_000

// get returns the entry of hash read under generation gen.
func (ac *authCache) get(hash []byte, gen uint64) (jit.Token, []jit.RoleBinding, bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	e, ok := ac.entries[string(hash)]
	if !ok || e.gen != gen {
		return jit.Token{}, nil, false
	}
	return e.token, slices.Clone(e.bindings), true
}

// put keeps what was read under generation gen (read before the
// database was).
func (ac *authCache) put(gen uint64, tk jit.Token, bindings []jit.RoleBinding) {
	if tk.UsesLeft != nil || tk.Kind == jit.TokenEnroll || tk.Kind == jit.TokenSetup || tk.Kind == jit.TokenHandoff {
		return
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.entries == nil || len(ac.entries) >= authCacheMax {
		ac.entries = map[string]authEntry{}
	}
	ac.entries[string(tk.Hash)] = authEntry{gen: gen, token: tk, bindings: slices.Clone(bindings)}
}
