package control

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Bootstrap creates the user admin with role admin everywhere when the
// database has no users. Its token is secret when given, else a new one,
// returned so the caller can print it once. It returns "" when users
// already existed.
func (c *Control) Bootstrap(ctx context.Context, secret string) (string, error) {
	if secret == "" {
		secret = NewSecret()
	} else if !strings.HasPrefix(secret, "ajar_") || len(secret) < 24 {
		return "", fmt.Errorf("AJAR_BOOTSTRAP_TOKEN must start with ajar_ and be at least 24 characters")
	}
	created := false
	err := c.store.Update(ctx, func(tx store.Tx) error {
		users, err := tx.ListUsers(store.UserFilter{Limit: 1})
		if err != nil || len(users) > 0 {
			return err
		}
		now := c.Now()
		if err := tx.CreateUser(jit.User{Name: "admin", CreatedAt: now}, ""); err != nil {
			return err
		}
		if err := tx.CreateRoleBinding(jit.RoleBinding{ID: NewID(), User: "admin", Role: jit.RoleAdmin, Group: jit.AllGroups, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.CreateToken(jit.Token{ID: NewID(), Kind: jit.TokenUser, User: "admin", Name: "bootstrap", CreatedAt: now, Hash: HashSecret(secret)}); err != nil {
			return err
		}
		created = true
		return tx.AppendEvent(c.event(nil, jit.OpUserCreate, jit.OutcomeSuccess, nil, map[string]string{"user": "admin", "role": jit.RoleAdmin, "via": "bootstrap"}))
	})
	if err != nil || !created {
		return "", err
	}
	return secret, nil
}

// CreateUser creates a user, with a password for the console if given.
func (c *Control) CreateUser(ctx context.Context, a *Actor, n jit.NewUser) (jit.User, error) {
	u := jit.User{Name: n.Name, CreatedAt: c.Now(), HasPassword: n.Password != ""}
	if err := ValidName("name", n.Name); err != nil {
		return u, err
	}
	if reservedName(n.Name) {
		return u, jit.Invalid("name", "%q is reserved: the activity log names the server and unauthenticated callers so", n.Name)
	}
	if err := a.require(jit.PermAdmin, "", "manage users"); err != nil {
		return u, err
	}
	hash := ""
	if n.Password != "" {
		var err error
		if hash, err = c.hashPassword(ctx, n.Password); err != nil {
			return u, err
		}
	}
	return u, c.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateUser(u, hash); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpUserCreate, jit.OutcomeSuccess, nil, map[string]string{"user": u.Name}))
	})
}

// reservedName reports whether name is one the activity log uses for
// actors that are not users: "system" (the server itself), "anonymous"
// (unauthenticated callers) and agents ("agent:<vm id>", which ValidName
// already refuses for its colon).
func reservedName(name string) bool {
	n := strings.ToLower(name)
	return n == "system" || n == "anonymous" || strings.HasPrefix(n, "agent:")
}

// SetPassword sets a user's console password: admins anyone's, users
// their own. A user changing their own password must give the current one
// (unless they have none yet); an admin resetting another's need not.
// Either way the user's console sessions end, all but the caller's own;
// it returns how many ended.
func (c *Control) SetPassword(ctx context.Context, a *Actor, user, current, password string) (int, error) {
	self := user == a.Name() && a.Token.Kind == jit.TokenUser
	if !self {
		if err := a.require(jit.PermAdmin, "", "set other users' passwords"); err != nil {
			return 0, err
		}
	}
	if self {
		var old string
		err := c.store.View(ctx, func(tx store.Tx) error {
			var err error
			_, old, err = tx.GetUser(user)
			return err
		})
		if err != nil {
			return 0, err
		}
		if old != "" {
			if current == "" {
				return 0, jit.Invalid("currentPassword", "changing your own password needs the current one")
			}
			ok, err := c.checkPassword(ctx, old, current)
			if err != nil {
				return 0, err
			}
			if !ok {
				return 0, c.logRefusal(ctx, a, jit.OpUserSetPassword, nil, jit.Invalid("currentPassword", "the current password is wrong"), map[string]any{"user": user})
			}
		}
	}
	hash, err := c.hashPassword(ctx, password)
	if err != nil {
		return 0, err
	}
	ended := 0
	err = c.store.Update(ctx, func(tx store.Tx) error {
		ended = 0
		if err := tx.SetPasswordHash(user, hash); err != nil {
			return err
		}
		tokens, err := tx.ListTokens(store.TokenFilter{User: user})
		if err != nil {
			return err
		}
		for _, tk := range tokens {
			if tk.Kind == jit.TokenUser && tk.Name == SessionName && tk.ID != a.Token.ID {
				if err := tx.DeleteToken(tk.ID); err != nil {
					return err
				}
				ended++
			}
		}
		return tx.AppendEvent(c.event(a, jit.OpUserSetPassword, jit.OutcomeSuccess, nil, map[string]any{"user": user, "sessionsEnded": ended}))
	})
	return ended, err
}

// ListUsers lists one page of users by name (admins only): at most limit
// (0 for DefaultPage, at most MaxPage) after cursor, and the cursor of the
// next page ("" after the last).
func (c *Control) ListUsers(ctx context.Context, a *Actor, limit int, cursor string) ([]jit.User, string, error) {
	if err := a.require(jit.PermAdmin, "", "list users"); err != nil {
		return nil, "", err
	}
	limit, err := pageLimit(limit, DefaultPage, MaxPage)
	if err != nil {
		return nil, "", err
	}
	f := store.UserFilter{Limit: limit + 1}
	if err := decodeCursor(cursor, "users", &f.After); err != nil {
		return nil, "", err
	}
	var out []jit.User
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListUsers(f)
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	return out, encodeCursor("users", out[limit-1].Name), nil
}

// DeleteUser deletes a user with their tokens and role bindings.
func (c *Control) DeleteUser(ctx context.Context, a *Actor, name string) error {
	if err := a.require(jit.PermAdmin, "", "delete users"); err != nil {
		return err
	}
	if name == a.Name() {
		return jit.Errorf(jit.EConflict, "you cannot delete yourself")
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteUser(name); err != nil {
			return err
		}
		// An offboarded user keeps no access: their open grants end now.
		n, err := c.followRoles(tx, a, name, nil, "user "+name+" deleted", nil)
		if err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpUserDelete, jit.OutcomeSuccess, nil, map[string]any{"user": name, "grantsRevoked": n}))
	})
}

// CreateToken creates an API token for a user.
func (c *Control) CreateToken(ctx context.Context, a *Actor, n jit.NewToken) (jit.CreatedToken, error) {
	if err := a.require(jit.PermAdmin, "", "create tokens"); err != nil {
		return jit.CreatedToken{}, err
	}
	if n.User == "" {
		return jit.CreatedToken{}, jit.Invalid("user", "user is required")
	}
	if len(n.Name) > 128 {
		return jit.CreatedToken{}, jit.Invalid("name", "name is longer than 128 bytes")
	}
	tk := jit.Token{ID: NewID(), Kind: jit.TokenUser, User: n.User, Name: n.Name, CreatedAt: c.Now()}
	if err := c.ttl(&tk, "ttl", n.TTL); err != nil {
		return jit.CreatedToken{}, err
	}
	return c.createToken(ctx, a, tk, nil)
}

func (c *Control) ttl(tk *jit.Token, field, ttl string) error {
	if ttl == "" {
		return nil
	}
	d, err := jit.ParseISODuration(ttl)
	if err != nil {
		return jit.Invalid(field, "%v", err)
	}
	if d <= 0 || d > 366*24*time.Hour {
		return jit.Invalid(field, "ttl must be positive and at most a year, got %s", ttl)
	}
	exp := tk.CreatedAt.Add(d)
	tk.ExpiresAt = &exp
	return nil
}

func (c *Control) createToken(ctx context.Context, a *Actor, tk jit.Token, check func(store.Tx) error) (jit.CreatedToken, error) {
	secret := NewSecret()
	tk.Hash = HashSecret(secret)
	err := c.store.Update(ctx, func(tx store.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		if tk.User != "" {
			if _, _, err := tx.GetUser(tk.User); err != nil {
				return targeted(err, "user")
			}
		}
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpTokenCreate, jit.OutcomeSuccess, nil, map[string]any{"token": tk.ID, "kind": tk.Kind, "user": tk.User, "group": tk.Group, "name": tk.Name}))
	})
	return jit.CreatedToken{Token: tk, Secret: secret}, err
}

// ListTokens lists one page of API tokens, oldest first (admins only;
// secrets are never shown): at most limit (0 for DefaultPage, at most
// MaxPage) after cursor, and the cursor of the next page ("" after the
// last).
func (c *Control) ListTokens(ctx context.Context, a *Actor, user string, limit int, cursor string) ([]jit.Token, string, error) {
	// Every user may list their own tokens.
	if !(user == a.Name() && a.Token.Kind == jit.TokenUser) {
		if err := a.require(jit.PermAdmin, "", "list tokens"); err != nil {
			return nil, "", err
		}
	}
	limit, err := pageLimit(limit, DefaultPage, MaxPage)
	if err != nil {
		return nil, "", err
	}
	f := store.TokenFilter{User: user, Limit: limit + 1}
	var created int64
	if err := decodeCursor(cursor, "tokens", &created, &f.AfterID); err != nil {
		return nil, "", err
	}
	if cursor != "" {
		f.AfterCreated = time.Unix(0, created)
	}
	var out []jit.Token
	err = c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListTokens(f)
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	return out, encodeCursor("tokens", last.CreatedAt.UnixNano(), last.ID), nil
}

// RevokeToken deletes a token: admins any, other users their own.
func (c *Control) RevokeToken(ctx context.Context, a *Actor, id string) error {
	admin := a.require(jit.PermAdmin, "", "revoke tokens")
	return c.store.Update(ctx, func(tx store.Tx) error {
		if admin != nil {
			// Not an admin: only a token of their own, and others' stay
			// invisible.
			own, err := tx.ListTokens(store.TokenFilter{User: a.Name()})
			if err != nil {
				return err
			}
			if a.Token.Kind != jit.TokenUser || !slices.ContainsFunc(own, func(t jit.Token) bool { return t.ID == id }) {
				return admin
			}
		}
		if err := tx.DeleteToken(id); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpTokenRevoke, jit.OutcomeSuccess, nil, map[string]string{"token": id}))
	})
}

// CreateRoleBinding gives a user a role in a group ("*" = all groups).
func (c *Control) CreateRoleBinding(ctx context.Context, a *Actor, b jit.RoleBinding) (jit.RoleBinding, error) {
	if err := a.require(jit.PermAdmin, "", "manage role bindings"); err != nil {
		return b, err
	}
	if err := jit.ValidRole(b.Role); err != nil {
		return b, jit.Invalid("role", "%v", err)
	}
	if b.Group == "" {
		return b, jit.Invalid("group", `group is required ("*" for all groups)`)
	}
	b.ID, b.CreatedAt = NewID(), c.Now()
	return b, c.store.Update(ctx, func(tx store.Tx) error {
		if _, _, err := tx.GetUser(b.User); err != nil {
			return targeted(err, "user")
		}
		if b.Group != jit.AllGroups {
			if _, err := tx.GetGroup(b.Group); err != nil {
				return targeted(err, "group")
			}
		}
		if err := tx.CreateRoleBinding(b); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpRoleBindingCreate, jit.OutcomeSuccess, nil, b))
	})
}

// ListRoleBindings lists bindings: admins see all, others their own.
func (c *Control) ListRoleBindings(ctx context.Context, a *Actor, user string) ([]jit.RoleBinding, error) {
	if !a.Can(jit.PermAdmin, "") {
		if user != "" && user != a.Name() {
			return nil, jit.Errorf(jit.EForbidden, "%s may list only their own role bindings", a.Name())
		}
		user = a.Name()
	}
	var out []jit.RoleBinding
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListRoleBindings(user)
		return err
	})
	return out, err
}

// DeleteRoleBinding removes a binding (admins only). The user's active
// grants that their remaining bindings would not let them request end
// with it (followRoles).
func (c *Control) DeleteRoleBinding(ctx context.Context, a *Actor, id string) error {
	if err := a.require(jit.PermAdmin, "", "manage role bindings"); err != nil {
		return err
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		all, err := tx.ListRoleBindings("")
		if err != nil {
			return err
		}
		var b *jit.RoleBinding
		var rest []jit.RoleBinding
		for i := range all {
			if all[i].ID == id {
				b = &all[i]
			}
		}
		if b == nil {
			return jit.Errorf(jit.ENotFound, "role binding %s not found", id)
		}
		for _, o := range all {
			if o.User == b.User && o.ID != id {
				rest = append(rest, o)
			}
		}
		if err := tx.DeleteRoleBinding(id); err != nil {
			return err
		}
		if err := tx.AppendEvent(c.event(a, jit.OpRoleBindingDelete, jit.OutcomeSuccess, nil, map[string]string{"binding": id, "user": b.User, "role": b.Role, "group": b.Group})); err != nil {
			return err
		}
		why := fmt.Sprintf("role %s of %s in group %s removed", b.Role, b.User, b.Group)
		_, err = c.followRoles(tx, a, b.User, rest, why, roleChange{Operation: jit.OpRoleBindingDelete, Binding: *b})
		return err
	})
}

// roleChange names, in the events of the grants it ended, the role change
// that ended them.
type roleChange struct {
	Operation string          `json:"operation"`
	Binding   jit.RoleBinding `json:"binding"`
}

// Password hashing: argon2id with OWASP's minimum parameters.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	// MinPassword is the shortest password accepted.
	MinPassword = 12
)

// Concurrent argon2id hashing is capped: each takes argonMemory, so at
// most one per core runs, and a caller waits at most HashWait for a turn
// before getting 429 with Retry-After.
const HashWait = 2 * time.Second

// hashTurn waits for a turn to hash; done gives it back.
func (c *Control) hashTurn(ctx context.Context) (done func(), err error) {
	t := time.NewTimer(c.hashWait)
	defer t.Stop()
	select {
	case c.hashing <- struct{}{}:
		return func() { <-c.hashing }, nil
	case <-t.C:
		return nil, jit.RateLimited(c.hashWait, "too many password checks at once; try again in a moment")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Control) hashPassword(ctx context.Context, password string) (string, error) {
	if len(password) < MinPassword || len(password) > 1024 {
		return HashPassword(password) // the error, without hashing
	}
	done, err := c.hashTurn(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	return HashPassword(password)
}

func (c *Control) checkPassword(ctx context.Context, hash, password string) (bool, error) {
	done, err := c.hashTurn(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	return CheckPassword(hash, password), nil
}

// HashPassword returns an argon2id hash of password in PHC string form.
func HashPassword(password string) (string, error) {
	if len(password) < MinPassword {
		return "", jit.Invalid("password", "password must be at least %d characters", MinPassword)
	}
	if len(password) > 1024 {
		return "", jit.Invalid("password", "password is longer than 1024 bytes")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash, in constant time.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
