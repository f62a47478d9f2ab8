package azurensg

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/jit"
)

// Client reaches Azure Resource Manager with one credential. It creates the
// SDK clients of a subscription on first use and is safe for concurrent use.
type Client struct {
	cred    azcore.TokenCredential
	options *arm.ClientOptions
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	subs map[string]*clients
}

// clients are the SDK clients of one subscription.
type clients struct {
	vms       *armcompute.VirtualMachinesClient
	nics      *armnetwork.InterfacesClient
	subnets   *armnetwork.SubnetsClient
	publicIPs *armnetwork.PublicIPAddressesClient
	nsgs      *armnetwork.SecurityGroupsClient
	rules     *armnetwork.SecurityRulesClient
}

// NewClient returns a Client that authenticates with cred. options may be
// nil; tests set options.Transport to the SDK's fake servers. now is the
// clock for discovery reports (nil: time.Now).
func NewClient(cred azcore.TokenCredential, options *arm.ClientOptions, logger *slog.Logger, now func() time.Time) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Client{cred: cred, options: options, log: logger, now: now, subs: map[string]*clients{}}
}

// NewDefaultClient returns a Client using azidentity's default credential
// chain (environment, workload identity, managed identity, Azure CLI, ...).
func NewDefaultClient(options *arm.ClientOptions, logger *slog.Logger) (*Client, error) {
	var credOpts *azidentity.DefaultAzureCredentialOptions
	if options != nil {
		credOpts = &azidentity.DefaultAzureCredentialOptions{ClientOptions: options.ClientOptions}
	}
	cred, err := azidentity.NewDefaultAzureCredential(credOpts)
	if err != nil {
		return nil, fmt.Errorf("azure credential: %w", err)
	}
	return NewClient(cred, options, logger, nil), nil
}

// sub returns the SDK clients of subscriptionID.
func (c *Client) sub(subscriptionID string) (*clients, error) {
	key := strings.ToLower(subscriptionID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.subs[key]; ok {
		return cl, nil
	}
	var (
		cl  clients
		err error
	)
	if cl.vms, err = armcompute.NewVirtualMachinesClient(subscriptionID, c.cred, c.options); err != nil {
		return nil, fmt.Errorf("azure client: %w", err)
	}
	nf, err := armnetwork.NewClientFactory(subscriptionID, c.cred, c.options)
	if err != nil {
		return nil, fmt.Errorf("azure client: %w", err)
	}
	cl.nics = nf.NewInterfacesClient()
	cl.subnets = nf.NewSubnetsClient()
	cl.publicIPs = nf.NewPublicIPAddressesClient()
	cl.nsgs = nf.NewSecurityGroupsClient()
	cl.rules = nf.NewSecurityRulesClient()
	c.subs[key] = &cl
	return &cl, nil
}

// httpStatus returns the HTTP status of an Azure error, 0 if it has none.
func httpStatus(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// errorCode returns the Azure error code of err ("SecurityRuleConflict").
func errorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// readError turns a failed read of what ("network interface nic1") into a
// jit.Error when Azure refused (403) or did not find (404) it, and wraps
// anything else.
func readError(err error, what string) error {
	switch httpStatus(err) {
	case http.StatusForbidden, http.StatusUnauthorized:
		msg := "ajar lacks permission to read " + what
		if code := errorCode(err); code != "" {
			msg += " (" + code + ")"
		}
		return &jit.Error{Code: jit.EForbidden, Message: msg, Target: what}
	case http.StatusNotFound:
		return &jit.Error{Code: jit.ENotFound, Message: "not found in Azure: " + what, Target: what}
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// writeError is readError for writes.
func writeError(err error, what string) error {
	if s := httpStatus(err); s == http.StatusForbidden || s == http.StatusUnauthorized {
		return &jit.Error{Code: jit.EForbidden, Message: "ajar lacks permission to change " + what, Target: what}
	}
	return fmt.Errorf("write %s: %w", what, err)
}

// resource is a parsed ARM id.
type resource struct {
	id    string
	sub   string
	group string
	name  string
	// parent is the parent resource's name (the VNet of a subnet).
	parent string
}

func parseID(id, wantType string) (resource, error) {
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return resource{}, jit.Invalid("externalId", "not an Azure resource id: %q", id)
	}
	if !strings.EqualFold(rid.ResourceType.String(), wantType) {
		return resource{}, jit.Invalid("externalId", "%q is not a %s", id, wantType)
	}
	r := resource{id: id, sub: rid.SubscriptionID, group: rid.ResourceGroupName, name: rid.Name}
	if rid.Parent != nil {
		r.parent = rid.Parent.Name
	}
	return r, nil
}

// Resource types ajar reads.
const (
	typeVM     = "Microsoft.Compute/virtualMachines"
	typeNIC    = "Microsoft.Network/networkInterfaces"
	typeSubnet = "Microsoft.Network/virtualNetworks/subnets"
	typeNSG    = "Microsoft.Network/networkSecurityGroups"
	typePIP    = "Microsoft.Network/publicIPAddresses"
)
