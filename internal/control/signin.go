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
func (c *Control) SignIn(ctx context.Context, user, password string, addr netip.Addr) (string, *Actor, error) {
	refused := jit.Errorf(jit.EUnauthorized, "wrong user name or password")
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
	switch {
	case len(password) > 1024: // HashPassword never accepted one so long
		CheckPassword(dummyPasswordHash(), "")
		reason = "password too long"
		if !known {
			a.User = ""
		}
	case !known:
		// Unknown users cost the same work as known ones and are not
		// named as the actor: the "name" may be a mistyped password.
		CheckPassword(dummyPasswordHash(), password)
		a.User, reason = "", "unknown user"
	case hash == "":
		CheckPassword(dummyPasswordHash(), password)
		reason = "user has no console password"
	case !CheckPassword(hash, password):
		reason = "wrong password"
	}
	if reason != "" {
		return "", nil, c.logRefusal(ctx, a, jit.OpSignIn, nil, refused, map[string]any{"via": "console", "reason": reason})
	}

	now := c.Now()
	exp := now.Add(SessionLifetime)
	secret := NewSecret()
	tk := jit.Token{ID: NewID(), Kind: jit.TokenUser, User: user, Name: SessionName, CreatedAt: now, ExpiresAt: &exp, Hash: HashSecret(secret)}
	err := c.store.Update(ctx, func(tx store.Tx) error {
		// Sessions that ran out are deleted here rather than kept forever.
		old, err := tx.ListTokens(user)
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
