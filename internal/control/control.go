// Package control is ajar's control plane: every operation a person, an
// agent or a backend can perform. Each checks the caller's permissions,
// changes the store and writes its activity event in one transaction. The
// REST API, the Azure-compatible API and the web console are thin layers
// over it.
package control

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Control runs the control plane's operations against one store.
type Control struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time

	hub   hub
	beats heartbeats

	draining  chan struct{} // closed by Drain
	drainOnce sync.Once

	// The expirer's wake-up for grants opened here (see noteEnd).
	kick      chan struct{}
	soonestMu sync.Mutex
	soonest   time.Time

	refusals    *buckets // logged refusals per principal (see logRefusal)
	agentEvents *buckets // events per agent (see RecordAgentEvent)
	deviceStart *buckets // device sign-ins started per address (see AllowDeviceStart)
	guesses     *guesses // failed sign-ins (see SignIn)

	hashing  chan struct{} // a slot per argon2id hash running (see hashTurn)
	hashWait time.Duration

	tokens      authCache   // what Authenticate read (see authCache)
	agentStates stateLoader // agents' states read together (see stateLoader)
	webhookHTTP bool        // see AllowHTTPWebhooks
}

// New returns a Control over st. now is the clock (time.Now in production).
func New(st store.Store, log *slog.Logger, now func() time.Time) *Control {
	return &Control{store: st, log: log, now: now, hub: hub{waiters: map[string][]*waiter{}}, kick: make(chan struct{}, 1), draining: make(chan struct{}),
		refusals: newBuckets(RefusalBurst, RefusalEvery), guesses: newGuesses(),
		agentEvents: newBuckets(AgentEventBurst, AgentEventEvery),
		deviceStart: newBuckets(DeviceStartBurst, DeviceStartEvery),
		hashing:     make(chan struct{}, runtime.GOMAXPROCS(0)), hashWait: HashWait}
}

// Store returns the store, for the adapters' own reads.
func (c *Control) Store() store.Store { return c.store }

// Now returns the control plane's current time.
func (c *Control) Now() time.Time { return c.now().UTC() }

// Actor is who calls: an authenticated user or agent and the address the
// call came from.
type Actor struct {
	User     string
	Address  netip.Addr
	Token    jit.Token
	Bindings []jit.RoleBinding
}

// Name is how the activity log names the actor.
func (a *Actor) Name() string {
	switch {
	case a == nil:
		return "system"
	case a.Token.Kind == jit.TokenAgent:
		return "agent:" + a.Token.VMID
	case a.User != "":
		return a.User
	}
	return "anonymous"
}

func (a *Actor) addr() string {
	if a == nil || !a.Address.IsValid() {
		return ""
	}
	return a.Address.String()
}

// Can reports whether the actor has perm in group ("" = every group).
func (a *Actor) Can(perm jit.Permission, group string) bool {
	return a != nil && a.Token.Kind == jit.TokenUser && jit.Can(a.Bindings, perm, group)
}

func (a *Actor) require(perm jit.Permission, group, what string) error {
	if a.Can(perm, group) {
		return nil
	}
	if group == "" {
		return jit.Errorf(jit.EForbidden, "%s may not %s", a.Name(), what)
	}
	return jit.Errorf(jit.EForbidden, "%s may not %s in group %s", a.Name(), what, group)
}

// readGroups returns the groups the actor may read, nil meaning all.
func (a *Actor) readGroups() []string {
	if a == nil || a.Token.Kind != jit.TokenUser {
		return []string{}
	}
	groups, all := jit.Groups(a.Bindings, jit.PermRead)
	if all {
		return nil
	}
	if groups == nil {
		groups = []string{}
	}
	return groups
}

// NewID returns a new identifier: 32 hexadecimal digits, the first 12 the
// time in milliseconds, the rest random (80 bits). Identifiers made later
// sort later, so that new rows go to the end of the indexes on them
// rather than to random pages.
func NewID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// NewSecret returns a new random API token.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return "ajar_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashSecret returns what the store keeps of a token.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return []byte(hex.EncodeToString(h[:]))
}

// Authenticate returns the actor a bearer token stands for.
func (c *Control) Authenticate(ctx context.Context, secret string, addr netip.Addr) (*Actor, error) {
	unauth := jit.Errorf(jit.EUnauthorized, "invalid or expired token")
	if !strings.HasPrefix(secret, "ajar_") || len(secret) > 128 {
		return nil, unauth
	}
	want := HashSecret(secret)
	a := &Actor{Address: addr}
	gen := c.store.AuthGeneration()
	if tk, bs, ok := c.tokens.get(want, gen); ok {
		a.Token, a.User, a.Bindings = tk, tk.User, bs
	} else {
		err := c.store.View(ctx, func(tx store.Tx) error {
			tk, err := tx.TokenByHash(want)
			if err != nil {
				return err
			}
			a.Token, a.User = tk, tk.User
			if tk.Kind == jit.TokenUser {
				a.Bindings, err = tx.ListRoleBindings(tk.User)
			}
			return err
		})
		if jit.ErrorCode(err) == jit.ENotFound {
			return nil, unauth
		}
		if err != nil {
			return nil, err
		}
		c.tokens.put(gen, a.Token, a.Bindings)
	}
	if subtle.ConstantTimeCompare(a.Token.Hash, want) != 1 {
		return nil, unauth
	}
	if a.Token.ExpiresAt != nil && !c.Now().Before(*a.Token.ExpiresAt) {
		return nil, unauth
	}
	if a.Token.Kind == jit.TokenSetup || a.Token.Kind == jit.TokenHandoff {
		return nil, unauth // only SetupPassword and ExchangeSSOCode take them
	}
	if a.Token.Kind == jit.TokenEnroll && (a.Token.UsesLeft == nil || *a.Token.UsesLeft <= 0) {
		// Used up, it stands for no one: not even its refusals are logged.
		return nil, jit.Errorf(jit.EUnauthorized, "enrollment token has no uses left")
	}
	return a, nil
}

// event builds an activity event for the actor.
func (c *Control) event(a *Actor, op, outcome string, vm *jit.VM, details any) *jit.Event {
	e := &jit.Event{Time: c.Now(), Actor: a.Name(), ActorAddress: a.addr(), Operation: op, Outcome: outcome}
	if vm != nil {
		e.VMID, e.Group = vm.ID, vm.Group
	}
	if details != nil {
		b, err := json.Marshal(details)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"marshalError": err.Error()})
		}
		e.Details = b
	}
	return e
}

// logRefusal records a refused operation in its own transaction, since
// the refused one changed nothing, and returns the error to answer: cause,
// or a rate_limited error once a's refusals pass their limit (see
// RefusalBurst). Past the limit one summary event is logged instead of
// each refusal. Details are cut to their bounds (see boundDetails). Each
// of vms, the VMs the refusal is about, gets an event; with none, one
// event names no VM.
func (c *Control) logRefusal(ctx context.Context, a *Actor, op string, vms []*jit.VM, cause error, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	details["error"] = jit.ErrorMessage(cause)
	if t := jit.ErrorTarget(cause); t != "" {
		details["target"] = t
	}
	b, ok, retry := c.refusals.take(principal(a), c.Now())
	if !ok {
		limited := jit.RateLimited(retry, "too many refused requests; try again in %s", retry.Round(time.Second))
		if b.summarized {
			return limited
		}
		details = map[string]any{"error": jit.ErrorMessage(limited), "rateLimited": true,
			"note":        fmt.Sprintf("refusals past %d in a burst, then one every %s, are answered 429 and not logged", RefusalBurst, RefusalEvery),
			"lastRefused": details}
		cause = limited
	} else if b.unlogged > 0 {
		details["refusalsNotLogged"] = b.unlogged
	}
	if len(vms) == 0 {
		vms = []*jit.VM{nil}
	}
	d := boundDetails(details)
	events := make([]*jit.Event, len(vms))
	for i, vm := range vms {
		events[i] = c.event(a, op, jit.OutcomeFailure, vm, d)
	}
	err := c.store.Update(ctx, func(tx store.Tx) error { return tx.AppendEvent(events...) })
	if err != nil {
		c.log.Error("record refusal", "op", op, "err", err)
	}
	return cause
}
