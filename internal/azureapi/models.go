package azureapi

import "time"

// The JSON shapes of api-version 2020-01-01, named as Microsoft's REST
// reference names them.

// Policy is a JitNetworkAccessPolicy resource.
type Policy struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Location   string            `json:"location,omitempty"`
	Properties *PolicyProperties `json:"properties"`
}

// PolicyProperties are a policy's VMs, its requests and its state.
type PolicyProperties struct {
	VirtualMachines   []PolicyVM      `json:"virtualMachines"`
	Requests          []AccessRequest `json:"requests,omitempty"`
	ProvisioningState string          `json:"provisioningState,omitempty"`
}

// PolicyVM is one VM of a policy (JitNetworkAccessPolicyVirtualMachine).
type PolicyVM struct {
	ID              string     `json:"id"`
	Ports           []PortRule `json:"ports"`
	PublicIPAddress string     `json:"publicIpAddress,omitempty"`
}

// PortRule is a JitNetworkAccessPortRule. AllowedSourceAddressPrefix and
// AllowedSourceAddressPrefixes exclude each other.
type PortRule struct {
	Number                       int      `json:"number"`
	Protocol                     string   `json:"protocol"`
	AllowedSourceAddressPrefix   string   `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes,omitempty"`
	MaxRequestAccessDuration     string   `json:"maxRequestAccessDuration"`
}

// AccessRequest is a JitNetworkAccessRequest: one initiate call and what
// became of each port it opened.
type AccessRequest struct {
	VirtualMachines []RequestVM `json:"virtualMachines"`
	StartTimeUTC    time.Time   `json:"startTimeUtc"`
	Requestor       string      `json:"requestor"`
	Justification   string      `json:"justification,omitempty"`
}

// RequestVM is a JitNetworkAccessRequestVirtualMachine.
type RequestVM struct {
	ID    string        `json:"id"`
	Ports []RequestPort `json:"ports"`
}

// RequestPort is a JitNetworkAccessRequestPort.
type RequestPort struct {
	Number                       int       `json:"number"`
	AllowedSourceAddressPrefix   string    `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string  `json:"allowedSourceAddressPrefixes,omitempty"`
	EndTimeUTC                   time.Time `json:"endTimeUtc"`
	Status                       string    `json:"status"`       // Initiated or Revoked
	StatusReason                 string    `json:"statusReason"` // Expired, UserRequested or NewerRequestInitiated
	MappedPort                   *int      `json:"mappedPort,omitempty"`
}

// Port statuses and their reasons.
const (
	StatusInitiated = "Initiated"
	StatusRevoked   = "Revoked"

	ReasonExpired               = "Expired"
	ReasonUserRequested         = "UserRequested"
	ReasonNewerRequestInitiated = "NewerRequestInitiated"
)

// InitiateRequest is a JitNetworkAccessPolicyInitiateRequest.
type InitiateRequest struct {
	VirtualMachines []InitiateVM `json:"virtualMachines"`
	Justification   string       `json:"justification,omitempty"`
}

// InitiateVM is a JitNetworkAccessPolicyInitiateVirtualMachine.
type InitiateVM struct {
	ID    string         `json:"id"`
	Ports []InitiatePort `json:"ports"`
}

// InitiatePort is a JitNetworkAccessPolicyInitiatePort. Azure documents
// endTimeUtc and one allowedSourceAddressPrefix; ajar also takes an ISO
// 8601 duration instead of the end time, and several prefixes (one grant
// each). With no prefix the caller's address is used.
type InitiatePort struct {
	Number                       int      `json:"number"`
	EndTimeUTC                   string   `json:"endTimeUtc,omitempty"`
	Duration                     string   `json:"duration,omitempty"`
	AllowedSourceAddressPrefix   string   `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes,omitempty"`
}

// PolicyList is a page of policies (JitNetworkAccessPoliciesList).
type PolicyList struct {
	Value    []Policy `json:"value"`
	NextLink string   `json:"nextLink,omitempty"`
}
