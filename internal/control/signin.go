package control

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Console sessions are user tokens with this name and a short life: the
// web console keeps the secret in a cookie, and Authenticate accepts it
// like any other token of the user.
const (
	SessionName     = "console session"
	SessionLifetime = 12 * time.Hour
)

var (
	dummyOnce sync.Once
	dummyHash string
)

// dummyPasswordHash is a hash no password matches in practice, checked
// for unknown users so that they cost the same argon2 work as known ones.
func dummyPasswordHash() string {
	dummyOnce.Do(func() {
		dummyHash, _ = HashPassword(NewSecret())
	})
	return dummyHash
}

// SignIn checks a user's console password and, when it matches, opens a
// session: a user token that expires after SessionLifetime. It returns the
// session's secret and the actor it stands for. Every attempt is written
// to the activity log as auth.signin, never with the password. A wrong
// user name and a wrong password give the same error.
//
// Guesses are limited (see guesses): past the limit an attempt is
// answered rate_limited with a wait, without checking the password.
func (c *Control) SignIn(ctx context.Context, user, password string, addr netip.Addr) (string, *Actor, error) {
	refused := jit.Errorf(jit.EUnauthorized, "wrong user name or password")
	name := user
	if len(name) > 64 { // longer is no user name; keep keys small
		name = name[:64]
	}
	at, wait := c.guesses.attempt(name, AddrKey(addr), c.Now())
	if wait > 0 {
		return "", nil, jit.RateLimited(wait, "too many failed sign-ins for this user from this address; try again in %s", wait.Round(time.Second))
	}
	failed := true
	defer func() {
		if failed {
			c.guesses.undo(at)
		}
	}()
	a := &Actor{User: user, Address: addr}
	known := ValidName("user", user) == nil
	hash := ""
	if known {
		err := c.store.View(ctx, func(tx store.Tx) error {
			var err error
			_, hash, err = tx.GetUser(user)
			return err
		})
		switch {
		case jit.ErrorCode(err) == jit.ENotFound:
			known = false
		case err != nil:
			return "", nil, err
		}
	}
	reason := ""
	check := hash
	if !known || hash == "" {
		check = dummyPasswordHash()
	}
	if len(password) > 1024 { // HashPassword never accepted one so long
		password = ""
	}
	// Unknown users cost the same work as known ones.
	ok, err := c.checkPassword(ctx, check, password)
	if err != nil {
		return "", nil, err
	}
	switch {
	case len(password) == 0:
		reason = "password empty or too long"
	case !known:
		reason = "unknown user"
	case hash == "":
		reason = "user has no console password"
	case !ok:
		reason = "wrong password"
	}
	if !known {
		a.User = "" // not named as the actor: the "name" may be a mistyped password
	}
	if reason != "" {
		failed = false // the failure stays counted
		return "", nil, c.logRefusal(ctx, a, jit.OpSignIn, nil, refused, map[string]any{"via": "console", "reason": reason})
	}

	now := c.Now()
	exp := now.Add(SessionLifetime)
	secret := NewSecret()
	tk := jit.Token{ID: NewID(), Kind: jit.TokenUser, User: user, Name: SessionName, CreatedAt: now, ExpiresAt: &exp, Hash: HashSecret(secret)}
	err = c.store.Update(ctx, func(tx store.Tx) error {
		// Sessions that ran out are deleted here rather than kept forever.
		old, err := tx.ListTokens(store.TokenFilter{User: user})
		if err != nil {
			return err
		}
		for _, o := range old {
			if o.Name == SessionName && o.Kind == jit.TokenUser && o.ExpiresAt != nil && !now.Before(*o.ExpiresAt) {
				if err := tx.DeleteToken(o.ID); err != nil {
					return err
				}
			}
		}
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		a.Bindings, err = tx.ListRoleBindings(user)
		if err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpSignIn, jit.OutcomeSuccess, nil, map[string]any{"via": "console", "session": tk.ID, "expiresAt": exp}))
	})
	if err != nil {
		return "", nil, err
	}
	failed = false
	c.guesses.succeed(at)
	a.Token = tk
	return secret, a, nil
}

// SignOut ends the console session a stands for. Other tokens are left
// alone: signing out of the console does not revoke API tokens.
func (c *Control) SignOut(ctx context.Context, a *Actor) error {
	if a == nil || a.Token.Kind != jit.TokenUser || a.Token.Name != SessionName || a.Token.ExpiresAt == nil {
		return nil
	}
	err := c.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteToken(a.Token.ID) })
	if jit.ErrorCode(err) == jit.ENotFound {
		return nil
	}
	return err
}

// Limits on sign-in guesses. Failures count per (name, source) pair, per
// source and per name, a source being an address or an IPv6 /64. A pair
// gets PairFree failures, then waits between attempts, doubling from one
// second up to GuessWindow. When its source has failed more than
// SourceFree times, or the name more than NameSlow times from anywhere,
// a pair gets one failure before waiting. A pair with no failures is never
// made to wait: whoever guesses cannot keep anyone else out, not even
// someone behind the same address who types the right password. Counts
// are forgotten GuessWindow after the last failure, and on success.
const (
	PairFree    = 5
	SourceFree  = 20
	NameSlow    = 50
	GuessWindow = 15 * time.Minute
	// maxGuessKeys bounds the memory of each table.
	maxGuessKeys = 100000
)

type failures struct {
	n    int
	last time.Time
}

// guesses counts failed sign-ins in memory: each replica counts on its
// own, and a restart forgets.
type guesses struct {
	mu      sync.Mutex
	pairs   map[string]*failures
	sources map[string]*failures
	names   map[string]*failures
}

func newGuesses() *guesses {
	return &guesses{pairs: map[string]*failures{}, sources: map[string]*failures{}, names: map[string]*failures{}}
}

// guess is one attempt: its keys, and when it was counted.
type guess struct {
	pair, source, name string
	at                 time.Time
}

// attempt counts an attempt as a failure in advance (so that parallel
// attempts cannot slip past the limit), unless the pair must wait: then
// it returns how long.
func (g *guesses) attempt(name, source string, now time.Time) (guess, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	at := guess{pair: name + "\x00" + source, source: source, name: name, at: now}
	p := g.get(g.pairs, at.pair, now)
	free := PairFree
	if g.get(g.sources, source, now).n > SourceFree || g.get(g.names, name, now).n > NameSlow {
		free = 1
	}
	if p.n >= free {
		wait := time.Second << min(p.n-free, 10)
		if wait > GuessWindow {
			wait = GuessWindow
		}
		if until := p.last.Add(wait); now.Before(until) {
			return guess{}, until.Sub(now)
		}
	}
	for _, m := range []struct {
		m map[string]*failures
		k string
	}{{g.pairs, at.pair}, {g.sources, source}, {g.names, name}} {
		f := g.get(m.m, m.k, now)
		f.n++
		f.last = now
		m.m[m.k] = f
	}
	return at, 0
}

// get returns k's failures, zero once GuessWindow has passed since the
// last; the entry is not stored until counted.
func (g *guesses) get(m map[string]*failures, k string, now time.Time) *failures {
	f := m[k]
	if f == nil || now.Sub(f.last) > GuessWindow {
		delete(m, k)
		if len(m) >= maxGuessKeys {
			for k, f := range m { // forget stale ones, else any one
				if now.Sub(f.last) > GuessWindow || len(m) >= maxGuessKeys {
					delete(m, k)
				}
			}
		}
		return &failures{}
	}
	return f
}

// undo takes back an attempt that neither failed nor succeeded (an
// error on the server's side).
func (g *guesses) undo(at guess) {
	if at.pair == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range []struct {
		m map[string]*failures
		k string
	}{{g.pairs, at.pair}, {g.sources, at.source}, {g.names, at.name}} {
		if f := m.m[m.k]; f != nil {
			if f.n--; f.n <= 0 {
				delete(m.m, m.k)
			}
		}
	}
}

// succeed forgets the pair's failures; the attempt is taken back from the
// source and the name.
func (g *guesses) succeed(at guess) {
	g.undo(at)
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.pairs, at.pair)
}
