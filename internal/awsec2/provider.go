package awsec2

import (
	"context"
	"errors"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ajarhq/ajar/internal/jit"
)

// Provider is AWS as a cloud backend of ajard (cloudsync.Provider): it
// discovers the instances of Regions that match Filters and enforces
// through an Enforcer.
type Provider struct {
	*Enforcer
	Regions []string
	Filters []types.Filter
}

// NewProvider returns the provider of regions (filtered by filters, when
// set) that works through e and its Client.
func NewProvider(e *Enforcer, regions []string, filters []types.Filter) *Provider {
	return &Provider{Enforcer: e, Regions: regions, Filters: filters}
}

// Backend is jit.BackendAWS.
func (p *Provider) Backend() string { return jit.BackendAWS }

// Scopes are the regions.
func (p *Provider) Scopes() []string { return p.Regions }

// Discover lists the instances of the region scope (Client.Discover).
func (p *Provider) Discover(ctx context.Context, scope string) ([]jit.Discovered, error) {
	return p.c.Discover(ctx, scope, p.Filters)
}

// InScope reports whether vm is in the region scope and, with filters,
// whether its labels say it matches them: only vpc-id filters can be
// told from the labels, so with any other filter a VM that a listing
// misses is not marked as gone.
func (p *Provider) InScope(vm jit.VM, scope string) bool {
	if vm.Labels[LabelRegion] != scope {
		return false
	}
	for _, f := range p.Filters {
		if aws.ToString(f.Name) != "vpc-id" || !slices.Contains(f.Values, vm.Labels[LabelVPC]) {
			return false
		}
	}
	return true
}

// OwnedLabels are the labels Discover sets.
func (p *Provider) OwnedLabels() []string {
	return []string{LabelRegion, LabelAccount, LabelInstanceID, LabelVPC, LabelENI, LabelSecurityGroups, LabelState, LabelName}
}

// UserError shortens an AWS answer to its code and message
// (cloudsync.Explainer).
func (p *Provider) UserError(err error) *jit.Error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return nil
	}
	return jit.Errorf(jit.EUnavailable, "AWS answered %s: %s", ae.ErrorCode(), clip(ae.ErrorMessage()))
}
