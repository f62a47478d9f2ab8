package gcpfw

import (
	"context"
	"slices"

	"github.com/ajarhq/ajar/internal/jit"
)

// Provider is Google Cloud as a cloud backend of ajard
// (cloudsync.Provider): it discovers the instances of Projects (in Zones
// when set, else in every zone) and enforces through an Enforcer.
type Provider struct {
	*Enforcer
	Projects []string
	Zones    []string // empty: every zone
}

// NewProvider returns the provider for projects (and zones, when set)
// that works through e and its Client.
func NewProvider(e *Enforcer, projects, zones []string) *Provider {
	return &Provider{Enforcer: e, Projects: projects, Zones: zones}
}

// Backend is jit.BackendGCP.
func (p *Provider) Backend() string { return jit.BackendGCP }

// Scopes are the projects.
func (p *Provider) Scopes() []string { return p.Projects }

// Discover lists the instances of the project scope (Client.Discover).
func (p *Provider) Discover(ctx context.Context, scope string) ([]jit.Discovered, error) {
	return p.c.Discover(ctx, scope, p.Zones)
}

// InScope reports whether vm is in the project scope and in one of the
// zones discovery covers.
func (p *Provider) InScope(vm jit.VM, scope string) bool {
	if vm.Labels[LabelProject] != scope {
		return false
	}
	return len(p.Zones) == 0 || slices.Contains(p.Zones, vm.Labels[LabelZone])
}

// OwnedLabels are the labels Discover sets.
func (p *Provider) OwnedLabels() []string { return slices.Clone(OwnedLabels) }

// UserError shortens a Google answer to what was done and the status
// (cloudsync.Explainer).
func (p *Provider) UserError(err error) *jit.Error { return UserError(err) }
