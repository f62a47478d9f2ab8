package control

import (
	"context"
	"net/netip"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// A setup link lets the first admin set a console password without any
// manual: while the user admin has no console password, each start of
// ajard prints a new link. It works once, for SetupLifetime, and
// authenticates nothing else.
const (
	SetupUser     = "admin"
	SetupLifetime = time.Hour
	setupName     = "console setup link"
)

// NewSetupSecret returns the secret of a new setup link for SetupUser,
// replacing earlier ones, or "" when that user does not exist or already
// has a console password. The link's creation is logged (never its
// secret).
func (c *Control) NewSetupSecret(ctx context.Context) (string, error) {
	secret := NewSecret()
	now := c.Now()
	exp := now.Add(SetupLifetime)
	uses := 1
	made := false
	err := c.store.Update(ctx, func(tx store.Tx) error {
		made = false
		_, hash, err := tx.GetUser(SetupUser)
		if jit.ErrorCode(err) == jit.ENotFound || (err == nil && hash != "") {
			return nil
		}
		if err != nil {
			return err
		}
		if err := deleteSetupTokens(tx, SetupUser); err != nil {
			return err
		}
		tk := jit.Token{ID: NewID(), Kind: jit.TokenSetup, User: SetupUser, Name: setupName, CreatedAt: now, ExpiresAt: &exp, UsesLeft: &uses, Hash: HashSecret(secret)}
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		made = true
		return tx.AppendEvent(c.event(nil, jit.OpUserSetupLink, jit.OutcomeSuccess, nil, map[string]any{"user": SetupUser, "link": tk.ID, "expiresAt": exp}))
	})
	if err != nil || !made {
		return "", err
	}
	return secret, nil
}

func deleteSetupTokens(tx store.Tx, user string) error {
	tokens, err := tx.ListTokens(store.TokenFilter{User: user})
	if err != nil {
		return err
	}
	for _, t := range tokens {
		if t.Kind == jit.TokenSetup {
			if err := tx.DeleteToken(t.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// setupOpen refuses a setup link of a user who has a console password
// (set since by other means) or no longer exists.
func setupOpen(tx store.Tx, user string) error {
	_, hash, err := tx.GetUser(user)
	if jit.ErrorCode(err) == jit.ENotFound || (err == nil && hash != "") {
		return jit.Errorf(jit.ENotFound, "the user has a password already")
	}
	return err
}

// SetupUserName returns the user a setup link's secret is for, or an
// unauthorized error when the link is unknown, used or expired.
func (c *Control) SetupUserName(ctx context.Context, secret string) (string, error) {
	tk, err := c.setupToken(ctx, secret)
	return tk.User, err
}

// setupToken finds a live setup token by its secret.
func (c *Control) setupToken(ctx context.Context, secret string) (jit.Token, error) {
	refused := jit.Errorf(jit.EUnauthorized, "this setup link is unknown, used or expired; restart ajard for a new one, or set the password with: ajar user passwd admin --password-stdin")
	var tk jit.Token
	if len(secret) > 128 {
		return jit.Token{}, refused
	}
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		if tk, err = tx.TokenByHash(HashSecret(secret)); err != nil {
			return err
		}
		return setupOpen(tx, tk.User)
	})
	if jit.ErrorCode(err) == jit.ENotFound {
		return jit.Token{}, refused
	}
	if err != nil {
		return jit.Token{}, err
	}
	if tk.Kind != jit.TokenSetup || (tk.ExpiresAt != nil && !c.Now().Before(*tk.ExpiresAt)) || tk.UsesLeft == nil || *tk.UsesLeft <= 0 {
		return jit.Token{}, refused
	}
	return tk, nil
}

// SetupPassword uses a setup link: it sets the console password of the
// link's user, ends the link and opens a console session, as SignIn does.
// A link that is unknown, used or expired changes nothing; the attempt is
// logged either way.
func (c *Control) SetupPassword(ctx context.Context, secret, password string, addr netip.Addr) (string, *Actor, error) {
	a := &Actor{Address: addr}
	tk, err := c.setupToken(ctx, secret)
	if err != nil {
		if jit.ErrorCode(err) == jit.EUnauthorized {
			return "", nil, c.logRefusal(ctx, a, jit.OpUserSetPassword, nil, err, map[string]any{"via": "setup link"})
		}
		return "", nil, err
	}
	a.User = tk.User
	hash, err := c.hashPassword(ctx, password)
	if err != nil {
		return "", nil, err
	}
	now := c.Now()
	exp := now.Add(SessionLifetime)
	session := NewSecret()
	st := jit.Token{ID: NewID(), Kind: jit.TokenUser, User: tk.User, Name: SessionName, CreatedAt: now, ExpiresAt: &exp, Hash: HashSecret(session)}
	err = c.store.Update(ctx, func(tx store.Tx) error {
		// Single use: a second use, even at the same moment, finds no use
		// left and changes nothing.
		if err := tx.UseToken(tk.ID); err != nil {
			if jit.ErrorCode(err) == jit.EForbidden {
				return jit.Errorf(jit.EUnauthorized, "this setup link was used already")
			}
			return err
		}
		if err := setupOpen(tx, tk.User); err != nil {
			if jit.ErrorCode(err) == jit.ENotFound {
				return jit.Errorf(jit.EUnauthorized, "this setup link is unknown, used or expired")
			}
			return err
		}
		if err := deleteSetupTokens(tx, tk.User); err != nil {
			return err
		}
		if err := tx.SetPasswordHash(tk.User, hash); err != nil {
			return err
		}
		if err := tx.CreateToken(st); err != nil {
			return err
		}
		var err error
		if a.Bindings, err = tx.ListRoleBindings(tk.User); err != nil {
			return err
		}
		return tx.AppendEvent(
			c.event(a, jit.OpUserSetPassword, jit.OutcomeSuccess, nil, map[string]any{"user": tk.User, "via": "setup link", "link": tk.ID}),
			c.event(a, jit.OpSignIn, jit.OutcomeSuccess, nil, map[string]any{"via": "setup link", "session": st.ID, "expiresAt": exp}),
		)
	})
	if jit.ErrorCode(err) == jit.EUnauthorized {
		return "", nil, c.logRefusal(ctx, &Actor{Address: addr}, jit.OpUserSetPassword, nil, err, map[string]any{"via": "setup link"})
	}
	if err != nil {
		return "", nil, err
	}
	a.Token = st
	return session, a, nil
}

// SetupPending reports whether SetupUser exists without a console
// password: the sign-in page then says how to get in.
func (c *Control) SetupPending(ctx context.Context) bool {
	pending := false
	c.store.View(ctx, func(tx store.Tx) error {
		_, hash, err := tx.GetUser(SetupUser)
		pending = err == nil && hash == ""
		return nil
	})
	return pending
}
