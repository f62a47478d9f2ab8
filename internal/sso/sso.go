// Package sso signs people in through their organization's OpenID
// Connect provider: the authorization code flow with PKCE, state and
// nonce, the provider found by discovery, and ID tokens verified by
// github.com/coreos/go-oidc (signature by the provider's keys, fetched
// again when it rotates them; issuer, audience, expiry, nonce). It
// returns who signed in and the claims ajar maps to roles; users, roles
// and sessions are the control plane's.
package sso

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is a provider's configuration, from ajard's --oidc-* flags.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// Name is shown on the button: "Sign in with <Name>".
	Name string
	// Scopes asked for besides openid; default profile and email.
	Scopes []string
	// UsernameClaim names the ajar user; default preferred_username.
	UsernameClaim string
	// GroupsClaim lists the user's groups; default groups.
	GroupsClaim string
}

// Check reports the first missing or malformed setting, naming its flag.
func (c Config) Check() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("--oidc-issuer: %q is not an https:// URL", c.Issuer)
	case c.ClientID == "":
		return errors.New("--oidc-issuer needs --oidc-client-id")
	case c.ClientSecret == "":
		return errors.New("--oidc-issuer needs --oidc-client-secret-file (a file holding the client secret)")
	}
	return nil
}

// Identity is who signed in, from a verified ID token (and the userinfo
// endpoint for claims the token leaves out).
type Identity struct {
	Issuer   string
	Subject  string
	Username string
	Groups   []string
	// Claims are the string and string-list claims, for claim mappings.
	Claims map[string][]string
}

// Pending is what a sign-in keeps between sending the browser to the
// provider and its return: compared with what comes back, never sent
// anywhere but to the provider.
type Pending struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x,omitempty"` // the page to return to
	// For `ajar login --sso`: the CLI's loopback port and challenge.
	CLIPort      int    `json:"p,omitempty"`
	CLIChallenge string `json:"c,omitempty"`
}

// Provider is one OpenID provider. Discovery happens at the first
// sign-in, and again after a failure, so that ajard starts (and local
// sign-in works) while the provider is down.
type Provider struct {
	cfg  Config
	hc   *http.Client
	ctx  context.Context // carries hc for the keys, fetched after discovery
	mu   sync.Mutex
	oidc *oidc.Provider
	now  func() time.Time // checks expiry; nil = time.Now
}

// New returns the provider of cfg; hc makes its requests (nil: a client
// with a 30-second timeout).
func New(cfg Config, hc *http.Client) *Provider {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"profile", "email"}
	}
	if cfg.Name == "" {
		cfg.Name = "single sign-on"
	}
	return &Provider{cfg: cfg, hc: hc, ctx: oidc.ClientContext(context.Background(), hc)}
}

// Name is the provider's display name.
func (p *Provider) Name() string { return p.cfg.Name }

// ErrUnavailable wraps failures to reach the provider.
var ErrUnavailable = errors.New("the identity provider cannot be reached")

func (p *Provider) discover(ctx context.Context) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oidc != nil {
		return p.oidc, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, p.hc), p.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %v", ErrUnavailable, p.cfg.Issuer, err)
	}
	p.oidc = op
	return op, nil
}

func (p *Provider) oauth(op *oidc.Provider, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		Endpoint:     op.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       append([]string{oidc.ScopeOpenID}, p.cfg.Scopes...),
	}
}

// Start begins a sign-in: it returns the provider's URL to send the
// browser to, and what to keep until it comes back to redirectURL.
func (p *Provider) Start(ctx context.Context, redirectURL, next string) (string, Pending, error) {
	op, err := p.discover(ctx)
	if err != nil {
		return "", Pending{}, err
	}
	pend := Pending{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Next: next}
	u := p.oauth(op, redirectURL).AuthCodeURL(pend.State, oidc.Nonce(pend.Nonce), oauth2.S256ChallengeOption(pend.Verifier))
	return u, pend, nil
}

// Finish completes a sign-in from the provider's answer at redirectURL
// (its query: code and state, or error): the state must be the pending
// one, the code is exchanged with the PKCE verifier, and the ID token
// must be the provider's, for this client, unexpired, with the nonce.
func (p *Provider) Finish(ctx context.Context, redirectURL string, q url.Values, pend Pending) (Identity, error) {
	if e := q.Get("error"); e != "" {
		return Identity{}, fmt.Errorf("the identity provider refused: %s %s", e, q.Get("error_description"))
	}
	if pend.State == "" || q.Get("state") != pend.State {
		return Identity{}, errors.New("the sign-in's state does not match the one this browser started; start again")
	}
	op, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, p.hc)
	tok, raw, err := p.exchange(ctx, op, redirectURL, q.Get("code"), pend.Verifier)
	if err != nil {
		return Identity{}, err
	}
	idt, err := p.verify(ctx, op, raw, pend.Nonce)
	if err != nil {
		return Identity{}, err
	}
	return p.identity(ctx, op, tok, idt)
}

// identity reads who signed in from a verified ID token, with claims it
// leaves out from the userinfo endpoint.
func (p *Provider) identity(ctx context.Context, op *oidc.Provider, tok *oauth2.Token, idt *oidc.IDToken) (Identity, error) {
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("the ID token's claims: %w", err)
	}
	// Claims the token leaves out (some providers send profile claims
	// only from userinfo) come from the userinfo endpoint, for the same
	// subject.
	if _, ok := claims[p.cfg.UsernameClaim]; !ok || claims[p.cfg.GroupsClaim] == nil {
		if op.UserInfoEndpoint() != "" {
			if ui, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
				more := map[string]any{}
				if ui.Claims(&more) == nil {
					for k, v := range more {
						if _, ok := claims[k]; !ok {
							claims[k] = v
						}
					}
				}
			}
		}
	}
	id := Identity{Issuer: idt.Issuer, Subject: idt.Subject, Claims: map[string][]string{}}
	for k, v := range claims {
		if s := stringsOf(v); s != nil {
			id.Claims[k] = s
		}
	}
	if u := id.Claims[p.cfg.UsernameClaim]; len(u) == 1 {
		id.Username = u[0]
	}
	if id.Username == "" {
		return Identity{}, fmt.Errorf("the ID token has no %s claim to name the user (see --oidc-username-claim)", p.cfg.UsernameClaim)
	}
	id.Groups = id.Claims[p.cfg.GroupsClaim]
	// Mappings on "groups" read the provider's groups claim, whatever its
	// name.
	if p.cfg.GroupsClaim != "groups" {
		id.Claims["groups"] = id.Groups
	}
	return id, nil
}

// exchange trades the code for tokens, with the PKCE verifier.
func (p *Provider) exchange(ctx context.Context, op *oidc.Provider, redirectURL, code, verifier string) (*oauth2.Token, string, error) {
	tok, err := p.oauth(op, redirectURL).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, "", fmt.Errorf("the identity provider refused the sign-in code: %s", re.ErrorCode)
		}
		return nil, "", fmt.Errorf("%w: code exchange: %v", ErrUnavailable, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", errors.New("the identity provider sent no ID token")
	}
	return tok, raw, nil
}

// noNonce is the nonce of a sign-in that cannot carry one: the device
// authorization grant sends none to the provider.
const noNonce = "\x00none"

// verify checks an ID token: signed by one of the provider's keys (its
// key set is fetched again for a key it does not know yet), issued by it,
// for this client, unexpired, and carrying the sign-in's nonce.
func (p *Provider) verify(ctx context.Context, op *oidc.Provider, raw, nonce string) (*oidc.IDToken, error) {
	// The key set outlives this request: it is fetched with p.ctx.
	idt, err := op.VerifierContext(p.ctx, &oidc.Config{ClientID: p.cfg.ClientID, Now: p.now}).Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("the ID token was refused: %w", err)
	}
	if idt.Subject == "" {
		return nil, errors.New("the ID token names no subject")
	}
	if nonce != noNonce && (nonce == "" || idt.Nonce != nonce) {
		return nil, errors.New("the ID token's nonce does not match this sign-in")
	}
	return idt, nil
}

// stringsOf returns a claim's value as strings: a string, or a list of
// strings; nil for anything else.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

func random() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
