package jit

import "time"

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
