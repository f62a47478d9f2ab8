// Package store is the contract of ajar's state: the Store interface that
// every database adapter provides (store/sqlite, store/postgres), the Tx
// with every read and write the rest of ajar needs, the filters of its
// lists and the change feed. The SQL both adapters share is in
// store/sqlstore; the compliance suite every adapter passes is in
// store/storetest.
package store

import (
	"context"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Store runs transactions against one database.
type Store interface {
	// Update runs fn in a read-write transaction: everything fn wrote
	// commits together when it returns nil and nothing does otherwise.
	// Update returns once the commit is durable. fn may run more than
	// once, when the database gives up on a transaction and it runs again
	// (PostgreSQL: a deadlock between replicas), so it must leave nothing
	// behind outside tx but results it sets anew on every run.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction over one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Changes delivers the id of every VM whose desired state changed in a
	// committed transaction, including those committed by other servers
	// sharing the database, until ctx ends.
	Changes(ctx context.Context) <-chan string
	// AuthGeneration is a number that moves on whenever a committed
	// transaction may have changed how a token authenticates (a token or
	// user deleted, a role binding made or removed), on this server before
	// its Update returns, on the others when they hear of it, and whenever
	// they may have missed hearing of it. What was read from the database
	// under one generation may be reused while the generation stays.
	AuthGeneration() uint64
	// Lead waits until this server is the one of the servers sharing the
	// database that leads the work called name (one at a time), and
	// returns a channel closed when it has stopped leading: ctx ended, the
	// store closed, or the database could no longer vouch for the lead.
	Lead(ctx context.Context, name string) (<-chan struct{}, error)
	Close() error
}

// Tx is every read and write ajar does, inside one transaction. Methods
// return *jit.Error with ENotFound or EConflict where those apply, and
// EUnavailable when the database cannot be reached or is shutting down.
//
// Writes whose result the caller does not read (CreateRequest,
// CreateGrant, BumpRevision, AppendEvent) may report their failure late:
// a store that sends statements pipelined holds them back until the
// update's next read, or until fn returns, and then their error (a
// conflict, say) comes from that read or from Update. Every other write
// reports at once. Either way a failed write fails the whole update, and
// after a database error the update's further calls fail too: fn should
// return the first error it gets.
type Tx interface {
	CreateGroup(g jit.Group) error
	GetGroup(name string) (jit.Group, error)
	ListGroups() ([]jit.Group, error)

	CreateVM(vm *jit.VM) error
	GetVM(id string) (jit.VM, error)
	// GetVMAccess returns what an access request needs of a VM, in one
	// query: the VM (without its agent's report, which a request does not
	// need and would cost decoding in the writer), its JIT policy (nil
	// when it has none) and the active grants of user on it for any of the
	// ports and sources in targets.
	GetVMAccess(id, user string, targets []GrantTarget) (jit.VM, *jit.Policy, []jit.Grant, error)
	ListVMs(f VMFilter) ([]jit.VM, error)
	// VMUsage returns the usage figures of the VMs (at most a page of them)
	// from the grants' indices: requests approved since since, the latest
	// grant (last access and user), and the grants active at now.
	VMUsage(vmIDs []string, since, now time.Time) (map[string]VMUsage, error)
	DeleteVM(id string) error
	// UpdateVM changes the VM's OS, addresses, labels and external id.
	UpdateVM(vm jit.VM) error
	// BumpRevision marks the VM's desired state changed: its revision
	// increases when the transaction commits, and watchers of the VM hear
	// of it then.
	BumpRevision(vmID string) error
	SetReport(vmID string, r *jit.Report) error

	PutPolicy(p jit.Policy) error
	// GetPolicy returns ENotFound when the VM has no JIT policy.
	GetPolicy(vmID string) (jit.Policy, error)
	DeletePolicy(vmID string) error
	// ListPolicies returns the policies of the VMs matching f.
	ListPolicies(f VMFilter) ([]jit.Policy, error)

	CreateRequest(r jit.Request) error
	ListRequests(f RequestFilter) ([]jit.Request, error)
	// GetRequest returns a request and its grants.
	GetRequest(id string) (jit.Request, error)
	// SetRequestState writes r's status and approval state if the request
	// is still in state from; it reports false, and changes nothing, when
	// it is not.
	SetRequestState(r jit.Request, from string) (bool, error)
	// NextPendingEnd returns the earliest end of a pending request's wait.
	NextPendingEnd() (time.Time, bool, error)
	// PutRequestKey records that user's request made with idempotency key
	// key, whose body hashes to bodyHash, is requestID; EConflict when the
	// user has used the key before.
	PutRequestKey(user, key, bodyHash, requestID string, at time.Time) error
	// GetRequestKey returns the body hash and the request of user's key;
	// ENotFound when the key is unused.
	GetRequestKey(user, key string) (bodyHash, requestID string, err error)

	CreateGrant(g jit.Grant) error
	GetGrant(id string) (jit.Grant, error)
	ListGrants(f GrantFilter) ([]jit.Grant, error)
	// EndGrant moves an active grant to status; it reports false, and
	// changes nothing, when the grant is no longer active.
	EndGrant(id, status string, endedAt time.Time, endedBy string) (bool, error)
	// ShortenGrant moves an active grant's end time earlier, to end; it
	// reports false, and changes nothing, when the grant is no longer
	// active or already ends by then.
	ShortenGrant(id string, end time.Time) (bool, error)
	// NextGrantEnd returns the earliest end time of the active grants.
	NextGrantEnd() (time.Time, bool, error)

	CreateUser(u jit.User, passwordHash string) error
	GetUser(name string) (jit.User, string, error) // the user and their password hash
	ListUsers(f UserFilter) ([]jit.User, error)
	DeleteUser(name string) error
	SetPasswordHash(name, hash string) error

	CreateToken(t jit.Token) error
	// TokenByHash returns the token whose hash is h.
	TokenByHash(h []byte) (jit.Token, error)
	ListTokens(f TokenFilter) ([]jit.Token, error)
	DeleteToken(id string) error
	// UseToken takes one use from a limited-use token; it returns EForbidden
	// when none is left.
	UseToken(id string) error

	CreateRoleBinding(b jit.RoleBinding) error
	ListRoleBindings(user string) ([]jit.RoleBinding, error)
	DeleteRoleBinding(id string) error

	CreateClaimMapping(m jit.ClaimMapping) error
	ListClaimMappings() ([]jit.ClaimMapping, error)
	DeleteClaimMapping(id string) error

	CreateWebhook(w jit.Webhook) error
	// GetWebhook returns a webhook with its secret.
	GetWebhook(id string) (jit.Webhook, error)
	// ListWebhooks returns every webhook, with its secret, in id order.
	ListWebhooks() ([]jit.Webhook, error)
	// DeleteWebhook removes a webhook and its deliveries.
	DeleteWebhook(id string) error
	// QueueDeliveries moves a webhook's cursor from from to to and queues
	// ds; it reports false, and changes nothing, when the cursor is no
	// longer at from (or the webhook is gone).
	QueueDeliveries(webhookID string, from, to int64, ds []jit.Delivery) (bool, error)
	ListDeliveries(f DeliveryFilter) ([]jit.Delivery, error)
	// SetDelivery writes d's status, attempts, last error and next attempt
	// if the delivery is still pending after attempts attempts; it reports
	// false, and changes nothing, when it is not.
	SetDelivery(d jit.Delivery, attempts int) (bool, error)
	// NextDeliveryDue returns the earliest next attempt of the pending
	// deliveries.
	NextDeliveryDue() (time.Time, bool, error)

	// AppendEvent appends events, in order, to the activity log when the
	// transaction commits; their sequence numbers and hashes are filled in
	// then (the log is written once per commit, in one statement).
	AppendEvent(events ...*jit.Event) error
	ListEvents(f EventFilter) ([]jit.Event, error)
	// WalkEvents calls fn for every event in sequence order until it
	// returns false.
	WalkEvents(fn func(*jit.Event) bool) error
	// LogCheckpoint returns the last event archived out of the log (its
	// sequence number and hash), which the log's first event continues;
	// false when nothing was ever archived.
	LogCheckpoint() (jit.Anchor, bool, error)
	// ArchiveEvents removes the events up to and including through from
	// the log and records through as the log's checkpoint; it returns how
	// many it removed. It returns ENotFound when through is not in the
	// log (archived already, or not written yet) and EConflict when its
	// hash is not through's.
	ArchiveEvents(through jit.Anchor, at time.Time, by string) (int64, error)
}

// VMFilter selects VMs, in (group, name) order. Zero fields match
// everything; Groups, when not nil, limits the result to those groups.
type VMFilter struct {
	Group   string
	Name    string
	Backend string
	Groups  []string
	IDs     []string // when not nil, only these VMs
	// Policy selects VMs with a JIT policy ("with") or without ("without").
	Policy string
	// AfterGroup and AfterName page: only VMs sorted after that one (with
	// Desc, before it, in reverse order).
	AfterGroup, AfterName string
	Desc                  bool
	Limit                 int // 0 = no limit
}

// Values of VMFilter.Policy.
const (
	WithPolicy    = "with"
	WithoutPolicy = "without"
)

// VMUsage is what a VM's grants say about its use.
type VMUsage struct {
	Approved     int // distinct requests with a grant started in the window
	LastAccess   *time.Time
	LastUser     string
	ActiveGrants int
}

// GrantTarget is a port and source (a prefix in canonical form).
type GrantTarget struct {
	Port   int
	Source string
}

// GrantFilter selects grants, newest first.
type GrantFilter struct {
	VMID   string
	VMIDs  []string // when not nil, only grants of these VMs
	Status string
	User   string
	Port   int    // 0 = any
	Source string // "" = any
	Groups []string
	// EndingBy selects active grants whose end time is at or before it,
	// the first to end first (other lists are newest first).
	EndingBy time.Time
	Since    time.Time // start time at or after
	// Before pages: only grants sorted after (start, id) — started before
	// BeforeStart, or at it with a greater id.
	BeforeStart time.Time
	BeforeID    string
	Limit       int
}

// RequestFilter selects requests, newest first.
type RequestFilter struct {
	User string
	// Before pages: only requests sorted after (created, id) — created
	// before BeforeCreated, or at it with a greater id.
	BeforeCreated time.Time
	BeforeID      string
	Limit         int
	// Status, when set, selects requests in that state; Groups, when not
	// nil, those asking in one of these groups.
	Status string
	Groups []string
	// PendingBy, when set, selects pending requests whose wait ends by it,
	// the earliest first; then AfterPending and AfterID page: only those
	// whose wait ends after AfterPending, or then with a greater id.
	PendingBy    time.Time
	AfterPending time.Time
	AfterID      string
	// NotUser, when set, leaves out that user's requests.
	NotUser string
}

// UserFilter selects users, in name order.
type UserFilter struct {
	After string // paging: only users named after it
	Limit int    // 0 = no limit
}

// TokenFilter selects tokens, in (creation time, id) order.
type TokenFilter struct {
	User string // "" = every user's
	// After pages: only tokens created after AfterCreated, or then with a
	// greater id.
	AfterCreated time.Time
	AfterID      string
	Limit        int // 0 = no limit
}

// DeliveryFilter selects webhook deliveries: a webhook's, newest event
// first, or (DueBy set) the pending ones whose next attempt is due by then,
// the earliest first.
type DeliveryFilter struct {
	WebhookID string
	BeforeSeq int64 // paging: only deliveries of events before this one
	DueBy     time.Time
	Limit     int
}

// EventFilter selects activity events in sequence order.
type EventFilter struct {
	VMID  string
	Actor string
	// ActorPrefix keeps the events whose actor starts with it.
	ActorPrefix string
	Operation   string
	Since       time.Time
	Until       time.Time
	Groups      []string
	AfterSeq    int64
	Limit       int
	Desc        bool
}
