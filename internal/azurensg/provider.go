package azurensg

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/ajarhq/ajar/internal/jit"
)

// Provider is Azure as a cloud backend of ajard (cloudsync.Provider): it
// discovers the VMs of Subscriptions (limited to ResourceGroups when set)
// and enforces through an Enforcer.
type Provider struct {
	*Enforcer
	Subscriptions  []string
	ResourceGroups []string // empty: the whole subscriptions
}

// NewProvider returns the provider for the subscriptions subs (and the
// resource groups rgs, when set) that works through e and its Client.
func NewProvider(e *Enforcer, subs, rgs []string) *Provider {
	return &Provider{Enforcer: e, Subscriptions: subs, ResourceGroups: rgs}
}

// Backend is jit.BackendAzure.
func (p *Provider) Backend() string { return jit.BackendAzure }

// Scopes are the subscriptions.
func (p *Provider) Scopes() []string { return p.Subscriptions }

// Discover lists the VMs of the subscription scope (Client.Discover).
func (p *Provider) Discover(ctx context.Context, scope string) ([]jit.Discovered, error) {
	return p.c.Discover(ctx, scope, p.ResourceGroups)
}

// InScope reports whether vm is in the subscription scope and in one of
// the resource groups discovery covers.
func (p *Provider) InScope(vm jit.VM, scope string) bool {
	if !strings.EqualFold(vm.Labels[LabelSubscription], scope) {
		return false
	}
	return len(p.ResourceGroups) == 0 || slices.ContainsFunc(p.ResourceGroups, func(rg string) bool {
		return strings.EqualFold(rg, vm.Labels[LabelResourceGroup])
	})
}

// OwnedLabels are the labels Discover sets.
func (p *Provider) OwnedLabels() []string {
	return []string{LabelSubscription, LabelResourceGroup, LabelLocation, LabelNIC, LabelNSG, LabelPowerState}
}

// UserError shortens an Azure answer to what was done and the status
// (cloudsync.Explainer).
func (p *Provider) UserError(err error) *jit.Error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return nil
	}
	what := strings.TrimSuffix(strings.TrimSuffix(err.Error(), re.Error()), ": ")
	msg := "Azure answered " + strings.TrimSpace(fmt.Sprintf("%d %s", re.StatusCode, http.StatusText(re.StatusCode)))
	if re.ErrorCode != "" {
		msg += " (" + re.ErrorCode + ")"
	}
	if what != "" && what != err.Error() {
		msg = what + ": " + msg
	}
	return jit.Errorf(jit.EUnavailable, "%s", msg)
}
