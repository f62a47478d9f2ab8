package jit

import (
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Notification kinds a webhook subscribes to. Each is one or more
// operations of the activity log (see NotificationKind).
const (
	KindRequestPending   = "request.pending"
	KindRequestApproved  = "request.approved"
	KindRequestDenied    = "request.denied"
	KindRequestExpired   = "request.expired"
	KindRequestCancelled = "request.cancelled"
	KindGrantOpened      = "grant.opened"
	KindGrantEnded       = "grant.ended"
	KindPolicyChanged    = "policy.changed"
	KindDriftDetected    = "drift.detected"
	KindAgentOffline     = "agent.offline"
)

// NotificationKinds lists every kind, in the order they are documented.
var NotificationKinds = []string{KindRequestPending, KindRequestApproved, KindRequestDenied, KindRequestExpired,
	KindRequestCancelled, KindGrantOpened, KindGrantEnded, KindPolicyChanged, KindDriftDetected, KindAgentOffline}

var opKinds = map[string]string{
	OpRequestPending:  KindRequestPending,
	OpRequestApprove:  KindRequestApproved,
	OpRequestDeny:     KindRequestDenied,
	OpRequestExpire:   KindRequestExpired,
	OpRequestCancel:   KindRequestCancelled,
	OpGrantOpen:       KindGrantOpened,
	OpGrantExpire:     KindGrantEnded,
	OpGrantRevoke:     KindGrantEnded,
	OpGrantSupersede:  KindGrantEnded,
	OpPolicyCreate:    KindPolicyChanged,
	OpPolicyUpdate:    KindPolicyChanged,
	OpPolicyDelete:    KindPolicyChanged,
	OpDriftDetect:     KindDriftDetected,
	OpAgentDisconnect: KindAgentOffline,
}

// NotificationKind returns the kind of notification an activity event
// is, or "" when it is none (refusals and failures are not notified).
func NotificationKind(e *Event) string {
	if e.Outcome != OutcomeSuccess {
		return ""
	}
	return opKinds[e.Operation]
}

// Webhook message formats.
const (
	FormatPlain = "plain" // the event as JSON
	FormatSlack = "slack" // a Slack incoming webhook message
	FormatTeams = "teams" // a Microsoft Teams incoming webhook message card
)

// Delivery states.
const (
	DeliveryPending   = "pending"   // waiting for its next attempt
	DeliveryDelivered = "delivered" // a 2xx answer
	DeliveryFailed    = "failed"    // given up after MaxDeliveryAttempts
)

// Bounds of a webhook.
const (
	MaxWebhookURL    = 2048
	MinWebhookSecret = 16
	MaxWebhookSecret = 256
	MaxWebhookGroups = 100
)

// Webhook sends the activity events of some kinds and groups to a URL,
// signed with its secret.
type Webhook struct {
	ID     string   `json:"id"`
	URL    string   `json:"url"`
	Format string   `json:"format"`
	Events []string `json:"events"` // kinds
	// Groups limits the events to those of these VM groups; empty for
	// every group (and events of no group, such as policy changes of
	// unknown VMs, go only to webhooks of every group).
	Groups    []string  `json:"groups"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"`
	// Cursor is the sequence number of the last activity event queued for
	// delivery; the webhook is told of events after the one current at
	// its creation.
	Cursor int64 `json:"cursor"`
	// Secret signs the bodies; never shown but at creation.
	Secret string `json:"-"`
}

// Wants reports whether the webhook is told of events of kind in group.
func (w *Webhook) Wants(kind, group string) bool {
	if kind == "" || !slices.Contains(w.Events, kind) {
		return false
	}
	return len(w.Groups) == 0 || (group != "" && slices.Contains(w.Groups, group))
}

// NewWebhook is what a webhook is created from.
type NewWebhook struct {
	URL    string   `json:"url"`
	Format string   `json:"format,omitempty"` // plain when empty
	Events []string `json:"events,omitempty"` // every kind when empty
	Groups []string `json:"groups,omitempty"`
	// Secret, when empty, is generated.
	Secret string `json:"secret,omitempty"`
}

// CreatedWebhook is a new webhook and its secret, shown this once.
type CreatedWebhook struct {
	Webhook
	Secret string `json:"secret"`
}

// Delivery is one event's delivery to one webhook.
type Delivery struct {
	WebhookID string `json:"webhookId"`
	Seq       int64  `json:"seq"` // the event's sequence number
	Kind      string `json:"kind"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	// LastError and LastStatusCode describe the last failed attempt.
	LastError      string     `json:"lastError,omitempty"`
	LastStatusCode int        `json:"lastStatusCode,omitempty"`
	NextAttempt    time.Time  `json:"nextAttempt"`
	CreatedAt      time.Time  `json:"createdAt"`
	DeliveredAt    *time.Time `json:"deliveredAt,omitempty"`
}

// ValidateWebhook checks a new webhook and fills in its defaults. An http
// URL must point at a loopback address unless allowHTTP.
func ValidateWebhook(w *NewWebhook, allowHTTP bool) error {
	if err := ValidWebhookURL(w.URL, allowHTTP); err != nil {
		return err
	}
	switch w.Format {
	case "":
		w.Format = FormatPlain
	case FormatPlain, FormatSlack, FormatTeams:
	default:
		return Invalid("format", "format must be plain, slack or teams, got %q", w.Format)
	}
	if len(w.Events) == 0 {
		w.Events = slices.Clone(NotificationKinds)
	}
	seen := map[string]bool{}
	var events []string
	for _, k := range w.Events {
		if !slices.Contains(NotificationKinds, k) {
			return Invalid("events", "unknown event kind %q (kinds: %s)", k, strings.Join(NotificationKinds, ", "))
		}
		if !seen[k] {
			seen[k] = true
			events = append(events, k)
		}
	}
	w.Events = events
	if len(w.Groups) > MaxWebhookGroups {
		return Invalid("groups", "at most %d groups, got %d", MaxWebhookGroups, len(w.Groups))
	}
	for _, g := range w.Groups {
		if g == "" || g == AllGroups {
			return Invalid("groups", "a group name must not be empty or *; leave groups out for every group")
		}
	}
	slices.Sort(w.Groups)
	w.Groups = slices.Compact(w.Groups)
	if w.Secret != "" && (len(w.Secret) < MinWebhookSecret || len(w.Secret) > MaxWebhookSecret || !printableASCII(w.Secret)) {
		return Invalid("secret", "the secret must be %d to %d printable ASCII characters", MinWebhookSecret, MaxWebhookSecret)
	}
	return nil
}

// ValidWebhookURL checks a webhook's URL: https, or http to a loopback
// address (any http address when allowHTTP), with a host, no user
// information and no fragment.
func ValidWebhookURL(s string, allowHTTP bool) error {
	if s == "" {
		return Invalid("url", "url is required")
	}
	if len(s) > MaxWebhookURL {
		return Invalid("url", "url is longer than %d bytes", MaxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return Invalid("url", "url must be an absolute http(s) URL such as https://hooks.example.com/ajar")
	}
	if u.User != nil {
		return Invalid("url", "url must not carry a user name or password; the body is signed with the webhook's secret")
	}
	if u.Fragment != "" {
		return Invalid("url", "url must not have a #fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !loopbackHost(u.Hostname()) {
			return Invalid("url", "url must be https (http only to a loopback address, unless ajard runs with --webhook-allow-http)")
		}
	default:
		return Invalid("url", "url must be https, got scheme %q", u.Scheme)
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback() && net.ParseIP(h) != nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
