package jit

import (
	"encoding/json"
	"slices"
	"time"
)

// Backends that enforce rules for a VM.
const (
	BackendAgent = "agent" // the ajar agent on the host, programming nftables
	BackendAzure = "azure" // the NSG on the VM's NIC or subnet
	BackendAWS   = "aws"   // a security group ajar owns on the EC2 instance's primary ENI
	BackendGCP   = "gcp"   // VPC firewall rules targeting the Compute Engine instance
)

// Backends lists every backend a VM may have.
var Backends = []string{BackendAgent, BackendAzure, BackendAWS, BackendGCP}

// Discovered is one VM as a cloud backend's discovery found it: the VM as
// ajar imports it (Backend, ExternalID, the cloud's name and group, OS,
// addresses, the labels discovery owns) and what discovery saw (health:
// Report.Exposed; whether ajar can enforce on it: Report.Enforceable and
// Report.Reason).
type Discovered struct {
	VM     VM
	Report Report
}

// Protocols of a port rule.
const (
	ProtoTCP = "TCP"
	ProtoUDP = "UDP"
	ProtoAny = "*"
)

// Grant states.
const (
	GrantActive     = "active"
	GrantExpired    = "expired"
	GrantRevoked    = "revoked"
	GrantSuperseded = "superseded"
)

// JIT classification of a VM, as the console's three tabs show it.
const (
	JITConfigured    = "configured"
	JITNotConfigured = "not-configured"
	JITUnsupported   = "unsupported"
)

// Group is the scope for permissions, like an Azure resource group.
type Group struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// VM is a host whose inbound traffic ajar controls.
type VM struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Group      string            `json:"group"`
	Backend    string            `json:"backend"`
	OS         string            `json:"os"`
	Addresses  []string          `json:"addresses"`
	Labels     map[string]string `json:"labels"`
	ExternalID string            `json:"externalId,omitempty"` // e.g. the ARM resource id
	CreatedAt  time.Time         `json:"createdAt"`
	// Revision increases with every change to the VM's desired state.
	Revision int64 `json:"revision"`
	// Report is what the VM's enforcer last said about it (agent heartbeat,
	// cloud discovery); nil when nothing has reported yet.
	Report *Report `json:"report,omitempty"`
}

// Report is what an enforcer observed on a VM.
type Report struct {
	Time            time.Time `json:"time"`
	AppliedRevision int64     `json:"appliedRevision"`
	Hostname        string    `json:"hostname,omitempty"`
	OS              string    `json:"os,omitempty"`
	// Listening lists the sockets the host listens on, such as "tcp/22".
	Listening []Socket `json:"listening,omitempty"`
	// Enforceable is false when the backend cannot enforce on the VM;
	// Reason then says why (no nftables, no NSG, VM stopped, ...).
	Enforceable bool   `json:"enforceable"`
	Reason      string `json:"reason,omitempty"`
	// Exposed lists ports reachable from anywhere without JIT (cloud
	// backends, which see the firewall rules rather than the sockets).
	Exposed []Socket `json:"exposed,omitempty"`
	// Disconnected is set by the server once an agent has been silent for
	// longer than AgentOfflineAfter (and the disconnection logged).
	Disconnected bool `json:"disconnected,omitempty"`
}

// SameObservations reports whether r and o say the same about the host:
// everything but the time, the applied revision and Disconnected.
func (r Report) SameObservations(o Report) bool {
	return r.Hostname == o.Hostname && r.OS == o.OS && r.Enforceable == o.Enforceable && r.Reason == o.Reason &&
		slices.Equal(r.Listening, o.Listening) && slices.Equal(r.Exposed, o.Exposed)
}

// Watch is an agent's long poll (POST /api/v1/agent/watch): what it
// observes on its host, and the revision of the last desired state it
// received, which the answer must be past (-1: answer at once).
type Watch struct {
	After  int64  `json:"after"`
	Report Report `json:"report"`
}

// Socket is a listening or exposed port.
type Socket struct {
	Protocol string `json:"protocol"` // TCP or UDP
	Port     int    `json:"port"`
	Address  string `json:"address,omitempty"`
}

// MaxReportSockets bounds the listening or exposed sockets of one agent
// report (the server refuses more; the agent reports the lowest ports).
const MaxReportSockets = 1024

// PortRule is one port of a JIT policy. Field names follow Azure's API.
type PortRule struct {
	Number                       int      `json:"number"`
	Protocol                     string   `json:"protocol"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes"`
	MaxRequestAccessDuration     string   `json:"maxRequestAccessDuration"`
}

// Policy is the JIT policy of one VM.
type Policy struct {
	VMID                     string     `json:"vmId"`
	Ports                    []PortRule `json:"ports"`
	RequireJustification     bool       `json:"requireJustification"`
	CloseConnectionsOnExpiry bool       `json:"closeConnectionsOnExpiry"`
	// Approval, when set, makes requests wait for approvers.
	Approval  *Approval `json:"approval,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
	// CreatedAt is when the VM got this policy; changes to it keep it
	// (zero for policies stored before it was kept). The Azure-compatible
	// API shows the requests since then as the policy's history.
	CreatedAt time.Time `json:"-"`
	// Written is, per port of Ports, the rule as a client of the
	// Azure-compatible API wrote it, shown back to it unchanged; nil when
	// the policy was set otherwise.
	Written []PortRuleText `json:"-"`
}

// PortRuleText is a port rule's values as a client wrote them, before
// ValidatePolicy normalized them into its PortRule.
type PortRuleText struct {
	Protocol                     string   `json:"protocol,omitempty"`
	AllowedSourceAddressPrefix   string   `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes,omitempty"`
	MaxRequestAccessDuration     string   `json:"maxRequestAccessDuration,omitempty"`
}

// Request is an access request and the grants it opened.
type Request struct {
	ID            string    `json:"id"`
	User          string    `json:"user"`
	Address       string    `json:"address"` // the address the request came from
	Justification string    `json:"justification"`
	CreatedAt     time.Time `json:"createdAt"`
	Grants        []Grant   `json:"grants"`
	// Status is one of the Request* states; requests of policies without
	// an approval rule are approved when made.
	Status string `json:"status"`
	// The rest is set for requests that waited for approval: what was
	// asked, the VMs' group, the approvals needed, the decisions so far,
	// until when it may wait and when it was decided.
	Asked     *AccessRequest `json:"asked,omitempty"`
	Group     string         `json:"group,omitempty"`
	Required  int            `json:"required,omitempty"`
	Decisions []Decision     `json:"decisions,omitempty"`
	ExpiresAt *time.Time     `json:"expiresAt,omitempty"`
	DecidedAt *time.Time     `json:"decidedAt,omitempty"`
}

// Grant is one opened (VM, port, protocol, source) with a start and an end.
type Grant struct {
	ID        string     `json:"id"`
	RequestID string     `json:"requestId"`
	VMID      string     `json:"vmId"`
	VMName    string     `json:"vmName"`
	Group     string     `json:"group"`
	Port      int        `json:"port"`
	Protocol  string     `json:"protocol"`
	Source    string     `json:"source"` // a CIDR prefix; single addresses are /32 or /128
	User      string     `json:"user"`
	StartTime time.Time  `json:"startTime"`
	EndTime   time.Time  `json:"endTime"`
	Status    string     `json:"status"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	EndedBy   string     `json:"endedBy,omitempty"`
}

// User is a person or an automation account.
type User struct {
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"createdAt"`
	HasPassword bool      `json:"hasPassword"`
	// Origin is "" for a local user; a user provisioned at their first
	// sign-in through an OpenID provider keeps the provider's issuer and
	// their subject there: ISSUER#SUBJECT.
	Origin string `json:"origin,omitempty"`
}

// Token kinds.
const (
	TokenUser   = "user"   // acts as its user
	TokenAgent  = "agent"  // an agent's credential: its own VM only
	TokenEnroll = "enroll" // enrolls agents into a group
	TokenSetup  = "setup"  // a one-time link that sets a user's first console password; authenticates nothing
	// TokenHandoff is a one-time code that hands a sign-in through an
	// OpenID provider to `ajar login --sso`; it authenticates nothing.
	TokenHandoff = "handoff"
)

// Token is an API credential. Only its hash is stored.
type Token struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	User      string     `json:"user,omitempty"`
	VMID      string     `json:"vmId,omitempty"`
	Group     string     `json:"group,omitempty"`
	Name      string     `json:"name,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	UsesLeft  *int       `json:"usesLeft,omitempty"`
	Hash      []byte     `json:"-"`
}

// ClaimMapping gives the users an OpenID provider vouches for a role in a
// group while a claim of theirs holds a value (for example groups =
// ops-admins); evaluated at each sign-in through the provider.
type ClaimMapping struct {
	ID        string    `json:"id"`
	Claim     string    `json:"claim"`
	Value     string    `json:"value"`
	Role      string    `json:"role"`
	Group     string    `json:"group"`
	CreatedAt time.Time `json:"createdAt"`
}

// RoleBinding gives a user a role in a group, or in every group ("*").
type RoleBinding struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Role      string    `json:"role"`
	Group     string    `json:"group"`
	CreatedAt time.Time `json:"createdAt"`
}

// Event is one entry of the hash-chained activity log.
type Event struct {
	Seq          int64           `json:"seq"`
	Time         time.Time       `json:"time"`
	Actor        string          `json:"actor"`
	ActorAddress string          `json:"actorAddress,omitempty"`
	VMID         string          `json:"vmId,omitempty"`
	Group        string          `json:"group,omitempty"`
	Operation    string          `json:"operation"`
	Outcome      string          `json:"outcome"`
	Details      json.RawMessage `json:"details,omitempty"`
	PrevHash     string          `json:"prevHash"`
	Hash         string          `json:"hash"`
}

// Event outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Operations written to the activity log.
const (
	OpGroupCreate        = "group.create"
	OpVMCreate           = "vm.create"
	OpVMDelete           = "vm.delete"
	OpPolicyCreate       = "policy.create"
	OpPolicyUpdate       = "policy.update"
	OpPolicyDelete       = "policy.delete"
	OpRequestApprove     = "request.approve"
	OpRequestRefuse      = "request.refuse"
	OpRequestPending     = "request.pending"
	OpRequestApproval    = "request.approval" // one approver's approval, short of the threshold
	OpRequestDeny        = "request.deny"
	OpRequestExpire      = "request.expire"
	OpRequestCancel      = "request.cancel"
	OpGrantOpen          = "grant.open"
	OpGrantExpire        = "grant.expire"
	OpGrantRevoke        = "grant.revoke"
	OpGrantSupersede     = "grant.supersede"
	OpGrantShorten       = "grant.shorten"
	OpEnforceApply       = "enforcement.apply"
	OpEnforceFail        = "enforcement.fail"
	OpAgentEnroll        = "agent.enroll"
	OpAgentConnect       = "agent.connect"
	OpAgentDisconnect    = "agent.disconnect"
	OpDriftDetect        = "drift.detect"
	OpDriftRepair        = "drift.repair"
	OpSignIn             = "auth.signin"
	OpUserCreate         = "user.create"
	OpUserDelete         = "user.delete"
	OpUserSetPassword    = "user.password"
	OpUserSetupLink      = "user.setuplink"
	OpTokenCreate        = "token.create"
	OpTokenRevoke        = "token.revoke"
	OpRoleBindingCreate  = "rolebinding.create"
	OpRoleBindingDelete  = "rolebinding.delete"
	OpClaimMappingCreate = "claimmapping.create"
	OpClaimMappingDelete = "claimmapping.delete"
	OpLogArchive         = "log.archive"
	OpWebhookCreate      = "webhook.create"
	OpWebhookDelete      = "webhook.delete"
)

// DesiredState is what an enforcer must make true for one VM: the lock on
// the policy's ports and the grants open ahead of it.
type DesiredState struct {
	VMID     string `json:"vmId"`
	Revision int64  `json:"revision"`
	// Lock lists the ports closed to everyone but the grants. Empty when
	// JIT is not enabled: then the enforcer removes everything of its own.
	Lock                     []PortLock  `json:"lock"`
	Grants                   []GrantRule `json:"grants"`
	CloseConnectionsOnExpiry bool        `json:"closeConnectionsOnExpiry"`
	// ServerTime is when the server produced this state.
	ServerTime time.Time `json:"serverTime"`
}

// PortLock is one locked port. Protocol is TCP, UDP or *.
type PortLock struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// GrantRule is one active grant as an enforcer needs it. Remaining is the
// time left when the server produced the state, in whole seconds rounded
// up; enforcers count from it rather than from EndTime so that a skewed
// host clock cannot stretch a grant.
type GrantRule struct {
	ID               string    `json:"id"`
	Port             int       `json:"port"`
	Protocol         string    `json:"protocol"`
	Source           string    `json:"source"` // CIDR
	EndTime          time.Time `json:"endTime"`
	RemainingSeconds int64     `json:"remainingSeconds"`
}
