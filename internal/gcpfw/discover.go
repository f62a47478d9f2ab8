package gcpfw

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"

	"github.com/ajarhq/ajar/internal/jit"
)

// Labels Discover puts on the instances it finds.
const (
	LabelProject    = "gcp.project"
	LabelZone       = "gcp.zone"
	LabelInstanceID = "gcp.instance-id"
	LabelNetworks   = "gcp.networks" // the networks of the instance's interfaces, comma-separated, nic0's first
	LabelStatus     = "gcp.status"   // RUNNING, TERMINATED, ...
	LabelTags       = "gcp.tags"     // network tags, comma-separated
)

// OwnedLabels are the labels Discover sets and keeps current.
var OwnedLabels = []string{LabelProject, LabelZone, LabelInstanceID, LabelNetworks, LabelStatus, LabelTags}

// ManagementPorts are the TCP ports whose exposure to the internet makes
// an instance unhealthy (JIT recommended).
var ManagementPorts = []int{22, 3389, 5985, 5986}

// Reasons an instance is not enforceable.
const (
	ReasonNoNIC = "instance has no network interface in a VPC network"
)

// Discover lists the instances of project, in zones or in every zone (one
// aggregated list) when zones is empty, with the firewall rules of their
// networks. An instance ajar cannot enforce on (not RUNNING, no network
// interface, the firewall rules of its network unreadable) comes back with
// Report.Enforceable false and the reason; Report.Exposed lists the
// management ports that ingress rules open to 0.0.0.0/0 or ::/0. An error
// means the listing itself failed (jit.EForbidden when refused).
func (c *Client) Discover(ctx context.Context, project string, zones []string) ([]jit.Discovered, error) {
	instances, err := c.listInstances(ctx, project, zones)
	if err != nil {
		return nil, err
	}
	rules := map[string][]*computepb.Firewall{} // by project
	ruleErrs := map[string]error{}
	firewallsOf := func(p string) ([]*computepb.Firewall, error) {
		if r, ok := rules[p]; ok {
			return r, nil
		}
		if err, ok := ruleErrs[p]; ok {
			return nil, err
		}
		r, err := c.listFirewalls(ctx, p)
		if err != nil {
			ruleErrs[p] = err
			return nil, err
		}
		rules[p] = r
		return r, nil
	}
	out := make([]jit.Discovered, 0, len(instances))
	for _, in := range instances {
		d, err := c.instance(project, in, firewallsOf)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b jit.Discovered) int {
		return cmp.Or(cmp.Compare(a.VM.Labels[LabelZone], b.VM.Labels[LabelZone]), cmp.Compare(a.VM.Name, b.VM.Name))
	})
	return out, nil
}

func (c *Client) listInstances(ctx context.Context, project string, zones []string) ([]*computepb.Instance, error) {
	var out []*computepb.Instance
	if len(zones) == 0 {
		what := "the instances of project " + project
		err := c.retry(ctx, "aggregated list instances", func() error {
			out = nil
			it := c.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{Project: project})
			for {
				pair, err := it.Next()
				if errors.Is(err, iterator.Done) {
					return nil
				}
				if err != nil {
					return err
				}
				if pair.Value == nil {
					continue
				}
				if w := pair.Value.GetWarning(); w != nil && w.GetCode() != "NO_RESULTS_ON_PAGE" {
					c.log.Warn("google cloud discovery: a zone answered with a warning", "project", project, "scope", pair.Key, "code", w.GetCode(), "message", w.GetMessage())
				}
				out = append(out, pair.Value.Instances...)
			}
		})
		return out, listError(err, what)
	}
	for _, zone := range zones {
		var found []*computepb.Instance
		err := c.retry(ctx, "list instances", func() error {
			found = nil
			it := c.instances.List(ctx, &computepb.ListInstancesRequest{Project: project, Zone: zone})
			for {
				in, err := it.Next()
				if errors.Is(err, iterator.Done) {
					return nil
				}
				if err != nil {
					return err
				}
				found = append(found, in)
			}
		})
		if err != nil {
			return nil, listError(err, "the instances of project "+project+" in zone "+zone)
		}
		out = append(out, found...)
	}
	return out, nil
}

func listError(err error, what string) error {
	if err == nil {
		return nil
	}
	return callError(err, "list", what)
}

// listFirewalls lists every firewall rule of project.
func (c *Client) listFirewalls(ctx context.Context, project string) ([]*computepb.Firewall, error) {
	var out []*computepb.Firewall
	err := c.retry(ctx, "list firewalls", func() error {
		out = nil
		it := c.firewalls.List(ctx, &computepb.ListFirewallsRequest{Project: project})
		for {
			fw, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, fw)
		}
	})
	return out, listError(err, "the firewall rules of project "+project)
}

// getInstance reads one instance.
func (c *Client) getInstance(ctx context.Context, r instanceRef) (*computepb.Instance, error) {
	var in *computepb.Instance
	err := c.retry(ctx, "get instance", func() error {
		var err error
		in, err = c.instances.Get(ctx, &computepb.GetInstanceRequest{Project: r.project, Zone: r.zone, Instance: r.name})
		return err
	})
	if err != nil {
		return nil, callError(err, "read", "instance "+r.String())
	}
	return in, nil
}

func (c *Client) instance(project string, in *computepb.Instance, firewallsOf func(string) ([]*computepb.Firewall, error)) (jit.Discovered, error) {
	zone := in.GetZone()
	zone = zone[strings.LastIndex(zone, "/")+1:]
	if in.GetName() == "" || zone == "" {
		return jit.Discovered{}, fmt.Errorf("list instances of project %s: an instance without name or zone", project)
	}
	r := instanceRef{project: project, zone: zone, name: in.GetName()}
	networks := networksOf(in)
	var nets []string
	for _, n := range networks {
		nets = append(nets, n.String())
	}
	v := jit.VM{
		Name:       r.name,
		Group:      groupOf(project),
		Backend:    jit.BackendGCP,
		OS:         osOf(in),
		ExternalID: r.String(),
		Addresses:  addresses(in),
		Labels: map[string]string{
			LabelProject:    project,
			LabelZone:       zone,
			LabelInstanceID: strconv.FormatUint(in.GetId(), 10),
			LabelStatus:     in.GetStatus(),
		},
	}
	if len(nets) > 0 {
		v.Labels[LabelNetworks] = strings.Join(nets, ",")
	}
	if tags := in.GetTags().GetItems(); len(tags) > 0 {
		v.Labels[LabelTags] = strings.Join(tags, ",")
	}
	rep := jit.Report{Time: c.now().UTC(), OS: v.OS, Enforceable: true, Hostname: in.GetHostname()}
	var reason string
	if len(networks) == 0 {
		reason = ReasonNoNIC
	}
	for _, n := range networks {
		rules, err := firewallsOf(n.project)
		if err != nil {
			if code := jit.ErrorCode(err); code == jit.EForbidden || code == jit.ENotFound || code == jit.EConflict {
				reason = cmp.Or(reason, jit.ErrorMessage(err))
				continue
			}
			return jit.Discovered{}, err
		}
		for _, s := range exposed(rules, targetOf(in, n, "")) {
			if !slices.Contains(rep.Exposed, s) {
				rep.Exposed = append(rep.Exposed, s)
			}
		}
	}
	if s := in.GetStatus(); s != "RUNNING" && reason == "" {
		reason = "instance is " + strings.ToLower(s)
	}
	if reason != "" {
		rep.Enforceable, rep.Reason = false, reason
	}
	return jit.Discovered{VM: v, Report: rep}, nil
}

// groupOf is the ajar group of a project's instances: the project id, a
// domain-scoped one ("example.com:proj") with "." for ":".
func groupOf(project string) string {
	return strings.ReplaceAll(strings.ToLower(project), ":", ".")
}

// addresses lists the instance's internal IPv4 and IPv6 addresses, then
// its external ones.
func addresses(in *computepb.Instance) []string {
	var internal, external []string
	add := func(list *[]string, s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(*list, a.String()) {
			*list = append(*list, a.String())
		}
	}
	for _, nic := range in.GetNetworkInterfaces() {
		add(&internal, nic.GetNetworkIP())
		add(&internal, nic.GetIpv6Address())
		for _, ac := range nic.AccessConfigs {
			add(&external, ac.GetNatIP())
		}
		for _, ac := range nic.Ipv6AccessConfigs {
			add(&external, ac.GetExternalIpv6())
		}
	}
	return append(internal, external...)
}

// osOf returns "windows" or "linux" from the boot disk, "" when unknown.
func osOf(in *computepb.Instance) string {
	for _, d := range in.Disks {
		if !d.GetBoot() {
			continue
		}
		for _, f := range d.GuestOsFeatures {
			if f.GetType() == "WINDOWS" {
				return "windows"
			}
		}
		for _, l := range d.Licenses {
			if strings.Contains(l, "/windows-cloud/") {
				return "windows"
			}
		}
		if len(d.Licenses) > 0 {
			return "linux"
		}
	}
	return ""
}
