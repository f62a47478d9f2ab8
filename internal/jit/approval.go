package jit

import (
	"fmt"
	"time"
)

// Approval rule bounds.
const (
	MaxApprovers           = 10
	DefaultPendingLifetime = 24 * time.Hour
	MinPendingLifetime     = 5 * time.Minute
	MaxPendingLifetime     = 7 * 24 * time.Hour
	MaxDecisionReason      = 1024
)

// Approval is a policy's approval rule: a request for the VM waits until
// Required distinct users holding the approver role in the VM's group,
// none of them the requester, approve it, or for PendingLifetime at most.
type Approval struct {
	Required        int    `json:"required"`
	PendingLifetime string `json:"pendingLifetime,omitempty"` // ISO 8601; PT24H when empty
	// AutoApprove, when set, approves at once the requests that meet all
	// its conditions.
	AutoApprove *AutoApproval `json:"autoApprove,omitempty"`
}

// AutoApproval lists the conditions under which a request needs no
// approver; a request must meet every condition set.
type AutoApproval struct {
	// MaxDuration: every port asked for at most this long (ISO 8601).
	MaxDuration string `json:"maxDuration,omitempty"`
	// Hours: made within these UTC hours, "HH-HH" (start inclusive, end
	// exclusive; "22-06" spans midnight).
	Hours string `json:"hours,omitempty"`
	// RequesterGroups: the requester holds a role in one of these groups
	// (a group of people, say "oncall", whose members an admin or the
	// identity provider's claims bind).
	RequesterGroups []string `json:"requesterGroups,omitempty"`
}

// MaxAutoApproveGroups bounds AutoApproval.RequesterGroups.
const MaxAutoApproveGroups = 20

// Allows reports whether a request made at now by a user with bindings,
// asking for durations, meets every condition.
func (c *AutoApproval) Allows(durations []time.Duration, now time.Time, bindings []RoleBinding) bool {
	if c.MaxDuration != "" {
		max, err := ParseISODuration(c.MaxDuration)
		if err != nil {
			return false
		}
		for _, d := range durations {
			if d > max {
				return false
			}
		}
	}
	if c.Hours != "" {
		from, to, err := parseHours(c.Hours)
		if err != nil {
			return false
		}
		h := now.UTC().Hour()
		if from < to && (h < from || h >= to) || from > to && h < from && h >= to {
			return false
		}
	}
	if len(c.RequesterGroups) > 0 {
		member := false
		for _, b := range bindings {
			for _, g := range c.RequesterGroups {
				member = member || b.Group == g
			}
		}
		if !member {
			return false
		}
	}
	return true
}

func parseHours(s string) (from, to int, err error) {
	_, err = fmt.Sscanf(s, "%d-%d", &from, &to)
	if err != nil || len(s) != 5 || s[2] != '-' || from < 0 || from > 23 || to < 1 || to > 24 || from == to {
		return 0, 0, fmt.Errorf("hours must be HH-HH in UTC, such as 08-18 or 22-06 (start 00 to 23, end 01 to 24, not equal), got %q", s)
	}
	return from, to, nil
}

func validateAutoApproval(c *AutoApproval) error {
	const f = "approval.autoApprove"
	if c.MaxDuration == "" && c.Hours == "" && len(c.RequesterGroups) == 0 {
		return Invalid(f, "auto-approval needs at least one condition: maxDuration, hours or requesterGroups")
	}
	if c.MaxDuration != "" {
		d, err := ParseISODuration(c.MaxDuration)
		if err != nil {
			return Invalid(f+".maxDuration", "%v", err)
		}
		if d < MinMaxDuration || d > MaxMaxDuration {
			return Invalid(f+".maxDuration", "maxDuration must be between PT5M and PT24H, got %s", c.MaxDuration)
		}
		c.MaxDuration = FormatISODuration(d)
	}
	if c.Hours != "" {
		if _, _, err := parseHours(c.Hours); err != nil {
			return Invalid(f+".hours", "%v", err)
		}
	}
	if len(c.RequesterGroups) > MaxAutoApproveGroups {
		return Invalid(f+".requesterGroups", "at most %d groups, got %d", MaxAutoApproveGroups, len(c.RequesterGroups))
	}
	for _, g := range c.RequesterGroups {
		if g == "" || g == AllGroups || !Storable(g) {
			return Invalid(f+".requesterGroups", "a group name must not be empty or *, got %q", g)
		}
	}
	return nil
}

// Lifetime returns how long a request may wait for its approvals.
func (a Approval) Lifetime() time.Duration {
	d, err := ParseISODuration(a.PendingLifetime)
	if err != nil {
		return DefaultPendingLifetime
	}
	return d
}

// validateApproval checks an approval rule and fills in its default.
func validateApproval(a *Approval) error {
	if a.Required < 1 || a.Required > MaxApprovers {
		return Invalid("approval.required", "approvers required must be between 1 and %d, got %d", MaxApprovers, a.Required)
	}
	d := DefaultPendingLifetime
	if a.PendingLifetime != "" {
		var err error
		if d, err = ParseISODuration(a.PendingLifetime); err != nil {
			return Invalid("approval.pendingLifetime", "%v", err)
		}
	}
	if d < MinPendingLifetime || d > MaxPendingLifetime {
		return Invalid("approval.pendingLifetime", "pending lifetime must be between PT5M and P7D, got %s", a.PendingLifetime)
	}
	a.PendingLifetime = FormatISODuration(d)
	if a.AutoApprove != nil {
		return validateAutoApproval(a.AutoApprove)
	}
	return nil
}

// Request states. A request of a policy without an approval rule is
// approved at once.
const (
	RequestPending   = "pending"
	RequestApproved  = "approved"
	RequestDenied    = "denied"
	RequestExpired   = "expired"
	RequestCancelled = "cancelled"
)

// Decision is one approver's verdict on a pending request.
type Decision struct {
	User    string    `json:"user"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}
