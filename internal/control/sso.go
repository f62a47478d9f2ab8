package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/netip"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
	"github.com/ajarhq/ajar/internal/store"
)

// `ajar login --sso` gets an API token named SSOTokenName that lives
// SSOTokenLifetime, for a one-time code (HandoffLifetime) the browser
// brings back to the CLI on loopback; the code is good only with the
// verifier whose SHA-256 the CLI sent first (as PKCE does).
const (
	SSOTokenName     = "sso login"
	SSOTokenLifetime = 12 * time.Hour
	HandoffLifetime  = 2 * time.Minute
)

// SSOSignIn signs in someone their OpenID provider vouched for (id, from
// a verified ID token). At their first sign-in the user is created,
// marked as coming from the provider (provisioned just in time); a local
// user of the same name is never signed in this way, nor one from
// another provider. It opens a console session (api false) or, for the
// CLI, an API token of SSOTokenLifetime; both are logged as auth.signin,
// and a provisioning as user.create.
func (c *Control) SSOSignIn(ctx context.Context, id sso.Identity, addr netip.Addr, cliChallenge string) (string, *Actor, error) {
	kind, name, lifetime, forWhat := jit.TokenUser, SessionName, SessionLifetime, ""
	var uses *int
	if cliChallenge != "" {
		one := 1
		kind, name, lifetime, uses, forWhat = jit.TokenHandoff, cliChallenge, HandoffLifetime, &one, "ajar login --sso"
	}
	exp := c.Now().Add(lifetime)
	tk := jit.Token{Kind: kind, Name: name, ExpiresAt: &exp, UsesLeft: uses}
	return c.ssoSignIn(ctx, id, addr, tk, forWhat)
}

// SSODeviceSignIn signs in, like SSOSignIn, someone who approved `ajar
// login --sso --device` at their provider, and returns their API token
// (SSOTokenName, SSOTokenLifetime).
func (c *Control) SSODeviceSignIn(ctx context.Context, id sso.Identity, addr netip.Addr) (jit.CreatedToken, error) {
	exp := c.Now().Add(SSOTokenLifetime)
	secret, a, err := c.ssoSignIn(ctx, id, addr, jit.Token{Kind: jit.TokenUser, Name: SSOTokenName, ExpiresAt: &exp}, "ajar login --sso --device")
	if err != nil {
		return jit.CreatedToken{}, err
	}
	return jit.CreatedToken{Token: a.Token, Secret: secret}, nil
}

// ssoSignIn provisions and signs in id and creates tk (its kind, name,
// expiry and uses) for them; forWhat names the CLI flow ("" for a
// console session).
func (c *Control) ssoSignIn(ctx context.Context, id sso.Identity, addr netip.Addr, tk jit.Token, forWhat string) (string, *Actor, error) {
	a := &Actor{Address: addr}
	via := "oidc"
	// An e-mail address or UPN names the user by its local part. The
	// user is bound to the provider's subject at provisioning, so another
	// subject whose name maps the same is refused, not let in as them.
	if i := strings.IndexByte(id.Username, '@'); i > 0 {
		id.Username = id.Username[:i]
	}
	origin := Origin(id.Issuer, id.Subject)
	details := map[string]any{"via": via, "issuer": id.Issuer, "subject": id.Subject, "user": id.Username}
	if err := ValidName("user", id.Username); err != nil {
		return "", nil, c.logRefusal(ctx, a, jit.OpSignIn, nil, jit.Invalid("user", "the provider's user name %q is not a valid ajar user name: %s", id.Username, jit.ErrorMessage(err)), details)
	}
	if reservedName(id.Username) {
		return "", nil, c.logRefusal(ctx, a, jit.OpSignIn, nil, jit.Errorf(jit.EForbidden, "the provider's user name %q is reserved in ajar", id.Username), details)
	}
	now := c.Now()
	secret := NewSecret()
	tk.ID, tk.User, tk.CreatedAt, tk.Hash = NewID(), id.Username, now, HashSecret(secret)
	err := c.store.Update(ctx, func(tx store.Tx) error {
		u, _, err := tx.GetUser(id.Username)
		switch {
		case jit.ErrorCode(err) == jit.ENotFound:
			u = jit.User{Name: id.Username, CreatedAt: now, Origin: origin}
			if err := tx.CreateUser(u, ""); err != nil {
				return err
			}
			if err := tx.AppendEvent(c.event(&Actor{User: id.Username, Address: addr}, jit.OpUserCreate, jit.OutcomeSuccess, nil, map[string]any{"user": id.Username, "via": via, "issuer": id.Issuer, "subject": id.Subject})); err != nil {
				return err
			}
		case err != nil:
			return err
		case u.Origin == "":
			return jit.Errorf(jit.EForbidden, "%s is a local ajar user: sign in with its password (a provider's user of the same name is not let in as it)", id.Username)
		case u.Origin != origin:
			return jit.Errorf(jit.EForbidden, "the ajar user %s was provisioned for another account (%s); an admin can delete it if the account changed", id.Username, u.Origin)
		}
		a.User = id.Username
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		if a.Bindings, err = c.applyClaims(tx, a, id.Username, id.Claims); err != nil {
			return err
		}
		d := map[string]any{"via": via, "issuer": id.Issuer, "subject": id.Subject, "expiresAt": *tk.ExpiresAt}
		if g := id.Groups; len(g) > maxLoggedGroups {
			d["groups"], d["groupsNotLogged"] = g[:maxLoggedGroups], len(g)-maxLoggedGroups
		} else if len(g) > 0 {
			d["groups"] = g
		}
		if forWhat != "" {
			d["for"] = forWhat
		} else {
			d["session"] = tk.ID
		}
		if tk.Kind == jit.TokenUser && tk.Name == SSOTokenName {
			d["token"] = tk.ID
		}
		return tx.AppendEvent(c.event(a, jit.OpSignIn, jit.OutcomeSuccess, nil, d))
	})
	if code := jit.ErrorCode(err); code == jit.EForbidden {
		return "", nil, c.logRefusal(ctx, &Actor{Address: addr}, jit.OpSignIn, nil, err, details)
	}
	if err != nil {
		return "", nil, err
	}
	a.Token = tk
	return secret, a, nil
}

// maxLoggedGroups bounds the groups a sign-in event lists.
const maxLoggedGroups = 50

// Origin is what a provisioned user keeps of the account it stands for:
// the provider's issuer and the account's subject.
func Origin(issuer, subject string) string { return issuer + "#" + subject }

// SSORefused logs a sign-in the provider's answer did not allow (state or
// nonce mismatch, a token refused, the provider unreachable) and returns
// cause.
func (c *Control) SSORefused(ctx context.Context, addr netip.Addr, cause error) error {
	return c.logRefusal(ctx, &Actor{Address: addr}, jit.OpSignIn, nil, cause, map[string]any{"via": "oidc"})
}

// ValidChallenge checks a CLI's challenge: the base64url SHA-256 of its
// verifier.
func ValidChallenge(s string) error {
	if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != sha256.Size {
		return jit.Invalid("challenge", "the challenge must be the base64url SHA-256 of the verifier (43 characters)")
	}
	return nil
}

// ExchangeSSOCode trades the one-time code of a sign-in through the
// provider, with the CLI's verifier, for an API token of its user that
// lives SSOTokenLifetime. A code that is unknown, used, expired or
// without its verifier gets nothing, and the attempt is logged.
func (c *Control) ExchangeSSOCode(ctx context.Context, code, verifier string, addr netip.Addr) (jit.CreatedToken, error) {
	refused := jit.Errorf(jit.EUnauthorized, "the sign-in code is unknown, used, expired or not this verifier's; run ajar login --sso again")
	var out jit.CreatedToken
	if len(code) > 128 || len(verifier) > 128 {
		return out, refused
	}
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	now := c.Now()
	exp := now.Add(SSOTokenLifetime)
	secret := NewSecret()
	a := &Actor{Address: addr}
	err := c.store.Update(ctx, func(tx store.Tx) error {
		h, err := tx.TokenByHash(HashSecret(code))
		if jit.ErrorCode(err) == jit.ENotFound {
			return refused
		}
		if err != nil {
			return err
		}
		if h.Kind != jit.TokenHandoff || h.ExpiresAt == nil || !now.Before(*h.ExpiresAt) || subtle.ConstantTimeCompare([]byte(h.Name), []byte(challenge)) != 1 {
			return refused
		}
		if err := tx.UseToken(h.ID); err != nil {
			if jit.ErrorCode(err) == jit.EForbidden {
				return refused
			}
			return err
		}
		if err := tx.DeleteToken(h.ID); err != nil {
			return err
		}
		a.User = h.User
		out.Token = jit.Token{ID: NewID(), Kind: jit.TokenUser, User: h.User, Name: SSOTokenName, CreatedAt: now, ExpiresAt: &exp, Hash: HashSecret(secret)}
		if err := tx.CreateToken(out.Token); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpTokenCreate, jit.OutcomeSuccess, nil, map[string]any{"token": out.Token.ID, "user": h.User, "via": "ajar login --sso", "expiresAt": exp}))
	})
	if jit.ErrorCode(err) == jit.EUnauthorized {
		return jit.CreatedToken{}, c.logRefusal(ctx, &Actor{Address: addr}, jit.OpTokenCreate, nil, err, map[string]any{"via": "ajar login --sso"})
	}
	if err != nil {
		return jit.CreatedToken{}, err
	}
	out.Secret = secret
	return out, nil
}

// Device sign-ins (`ajar login --sso --device`) start unauthenticated and
// each costs a call to the OpenID provider: an address (a /64 for IPv6)
// may start DeviceStartBurst at once, then one every DeviceStartEvery.
const (
	DeviceStartBurst = 10
	DeviceStartEvery = 30 * time.Second
)

// AllowDeviceStart takes a device sign-in start for addr, or refuses it
// (rate limited, saying when to try again).
func (c *Control) AllowDeviceStart(addr netip.Addr) error {
	if _, ok, retry := c.deviceStart.take(AddrKey(addr), c.Now()); !ok {
		return jit.RateLimited(retry, "too many device sign-ins started from %s; try again in %s", addr, retry.Round(time.Second))
	}
	return nil
}
