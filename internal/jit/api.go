package jit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Shapes the API exchanges beyond the domain objects themselves.

// VMView is a VM with its JIT classification, its policy (if any) and
// usage figures, as lists and the console show it.
type VMView struct {
	VM
	Classification   Classification `json:"classification"`
	Policy           *Policy        `json:"policy,omitempty"`
	ActiveGrants     int            `json:"activeGrants"`
	ApprovedLast7d   int            `json:"approvedRequestsLast7d"`
	LastAccess       *time.Time     `json:"lastAccess,omitempty"`
	LastUser         string         `json:"lastUser,omitempty"`
	Recommended      []PortRule     `json:"recommended,omitempty"`
	ShadowedRules    []string       `json:"shadowedRules,omitempty"`
	EnforcementError string         `json:"enforcementError,omitempty"`
}

// NewVM is what a caller gives to register a VM.
type NewVM struct {
	Name       string            `json:"name"`
	Group      string            `json:"group"`
	Backend    string            `json:"backend"`
	OS         string            `json:"os"`
	Addresses  []string          `json:"addresses"`
	Labels     map[string]string `json:"labels"`
	ExternalID string            `json:"externalId,omitempty"`
}

// Recommendation is the recommended policy and the health of a VM.
type Recommendation struct {
	Ports          []PortRule     `json:"ports"`
	Classification Classification `json:"classification"`
	Exposed        []Socket       `json:"exposed"`
}

// Verification is the result of walking the activity log's hash chain.
type Verification struct {
	OK            bool   `json:"ok"`
	Events        int64  `json:"events"`
	FirstBadEvent *int64 `json:"firstBadEvent,omitempty"`
	Problem       string `json:"problem,omitempty"`
	// Head is the last event: record it somewhere else (a ticket, a
	// log shipped off the host) and pass it back as an anchor later to
	// prove that nothing up to it was rewritten or cut off since.
	Head *Anchor `json:"head,omitempty"`
	// ArchivedThrough is the last event archived out of the log (ajar log
	// archive), which the log's first event continues; the archive files
	// prove the chain up to it.
	ArchivedThrough *Anchor `json:"archivedThrough,omitempty"`
	// AnchorArchived is set when the anchor asked about was archived: the
	// archive files, not the log, must hold it.
	AnchorArchived bool `json:"anchorArchived,omitempty"`
}

// ArchiveConfirm asks to remove the events up to Through from the
// activity log, once they are safely in an archive file.
type ArchiveConfirm struct {
	// From is the first archived event's sequence number: the log's first.
	From    int64  `json:"from"`
	Through Anchor `json:"through"`
	// Before is the date the archive was cut at, for the record.
	Before time.Time `json:"before,omitzero"`
}

// Archived is the log's new checkpoint and how many events left it.
type Archived struct {
	Removed         int64  `json:"removed"`
	ArchivedThrough Anchor `json:"archivedThrough"`
}

// Anchor names one event of the activity log by its sequence number and
// hash, written "SEQ:HASH".
type Anchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

func (a Anchor) String() string { return strconv.FormatInt(a.Seq, 10) + ":" + a.Hash }

// ParseAnchor parses "SEQ:HASH".
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 || len(hash) != 64 {
		return Anchor{}, fmt.Errorf("anchor %q must be SEQ:HASH, such as 42:%s", s, strings.Repeat("0", 64))
	}
	return Anchor{Seq: n, Hash: strings.ToLower(hash)}, nil
}

// NewEnrollToken is what an admin gives to create an enrollment token.
type NewEnrollToken struct {
	Group string `json:"group"`
	TTL   string `json:"ttl,omitempty"`  // ISO 8601, default PT1H
	Uses  int    `json:"uses,omitempty"` // default 1
}

// Enrollment is what an agent sends to enroll its host.
type Enrollment struct {
	Name      string   `json:"name"`
	Hostname  string   `json:"hostname"`
	OS        string   `json:"os"`
	Addresses []string `json:"addresses"`
}

// Enrolled is the enrolled VM and the agent's credential, shown once.
type Enrolled struct {
	VM     VM     `json:"vm"`
	Secret string `json:"secret"`
}

// AgentEvent is something an agent reports for the activity log.
type AgentEvent struct {
	Operation string          `json:"operation"`
	Outcome   string          `json:"outcome"`
	Details   json.RawMessage `json:"details,omitempty"`
	Time      time.Time       `json:"time"`
}

// NewUser is what an admin gives to create a user.
type NewUser struct {
	Name     string `json:"name"`
	Password string `json:"password,omitempty"`
}

// NewToken is what an admin gives to create an API token.
type NewToken struct {
	User string `json:"user"`
	Name string `json:"name"`
	TTL  string `json:"ttl,omitempty"` // ISO 8601; empty = no expiry
}

// CreatedToken is a token with its secret, shown once.
type CreatedToken struct {
	Token
	Secret string `json:"secret"`
}
