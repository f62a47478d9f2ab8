package azureapi

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// Actions of the Azure permission model, named in authorization errors.
const (
	actionRead     = "Microsoft.Security/locations/jitNetworkAccessPolicies/read"
	actionWrite    = "Microsoft.Security/locations/jitNetworkAccessPolicies/write"
	actionDelete   = "Microsoft.Security/locations/jitNetworkAccessPolicies/delete"
	actionInitiate = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"
)

// group returns the ajar group of a resource group the actor may read. As
// ARM checks access before existence, a caller who may not read every
// group gets 403 for a resource group they cannot read, whether or not it
// exists; only one who may read every group learns that it does not.
func (h *Handler) group(c *call, rg string) (string, error) {
	groups, err := h.ctl.ListGroups(c.r.Context(), c.a)
	if err != nil {
		return "", err
	}
	// Resource groups ignore case, and ajar refuses group names that
	// differ only in case; of groups that predate that, the one spelled
	// exactly as the call does is meant, else the name is ambiguous.
	var folded []string
	for _, g := range groups {
		if g.Name == rg {
			return g.Name, nil
		}
		if strings.EqualFold(g.Name, rg) {
			folded = append(folded, g.Name)
		}
	}
	switch len(folded) {
	case 1:
		return folded[0], nil
	case 0:
	default:
		return "", apiError(http.StatusConflict, "AmbiguousResourceGroup",
			"resource group '%s' matches the ajar groups %s, whose names differ only in case; Azure resource groups ignore case, so spell it exactly as one of them",
			rg, strings.Join(folded, ", "))
	}
	if !c.a.Can(jit.PermRead, "") {
		return "", h.denied(c, actionRead)
	}
	return "", apiError(http.StatusNotFound, "ResourceGroupNotFound", "resource group '%s' could not be found", rg)
}

// require returns ARM's 403 unless the actor has perm in group.
func (h *Handler) require(c *call, perm jit.Permission, group, action string) error {
	if c.a.Can(perm, group) {
		return nil
	}
	return h.denied(c, action)
}

// denied is ARM's answer to a call the caller may not make, for the scope
// the call's path names.
func (h *Handler) denied(c *call, action string) error {
	scope := c.r.URL.Path
	if i := strings.LastIndex(scope, "/"); i >= 0 && strings.EqualFold(scope[i+1:], "initiate") {
		scope = scope[:i]
	}
	return apiError(http.StatusForbidden, "AuthorizationFailed",
		"the client '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid",
		c.a.Name(), action, scope)
}

// isStatus reports whether err is an *Error with status.
func isStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// key returns the Azure policy a call's path names.
func (h *Handler) key(c *call) (control.AzureKey, error) {
	g, err := h.group(c, c.vars["rg"])
	if err != nil {
		return control.AzureKey{}, err
	}
	return control.AzureKey{Subscription: strings.ToLower(c.sub), Group: g, Location: control.NormalizeLocation(c.vars["loc"]), Name: c.vars["name"]}, nil
}

// vmARMID returns the ARM id a VM goes by.
func (h *Handler) vmARMID(vm jit.VM) string {
	if vm.Backend == jit.BackendAzure && vm.ExternalID != "" {
		return vm.ExternalID
	}
	k := control.AzureKeyOf(vm, h.defaults)
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s", h.subDisplay(k.Subscription), vm.Group, vm.Name)
}

func (h *Handler) subDisplay(sub string) string {
	if s, ok := h.subscription(sub); ok {
		return s
	}
	return sub
}

// policyID returns the ARM id of an Azure policy.
func (h *Handler) policyID(p control.AzurePolicy) string {
	rg := p.Key.Group
	for _, m := range p.Members {
		if l := m.VM.Labels["azure.resource-group"]; l != "" {
			rg = l
			break
		}
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Security/locations/%s/jitNetworkAccessPolicies/%s",
		h.subDisplay(p.Key.Subscription), rg, p.Key.Location, p.Key.Name)
}

// resource returns the Azure view of a policy.
func (h *Handler) resource(p control.AzurePolicy, now time.Time) Policy {
	props := &PolicyProperties{VirtualMachines: []PolicyVM{}, ProvisioningState: "Succeeded"}
	arm := map[string]string{}
	for _, m := range p.Members {
		id := h.vmARMID(m.VM)
		arm[m.VM.ID] = id
		v := PolicyVM{ID: id, Ports: []PortRule{}}
		for i, r := range m.Policy.Ports {
			var w *jit.PortRuleText
			if i < len(m.Policy.Written) {
				w = &m.Policy.Written[i]
			}
			v.Ports = append(v.Ports, portView(r, w))
		}
		props.VirtualMachines = append(props.VirtualMachines, v)
	}
	for _, r := range p.Requests {
		props.Requests = append(props.Requests, requestView(r, now, func(vmID string) string { return arm[vmID] }))
	}
	return Policy{ID: h.policyID(p), Name: p.Key.Name, Type: ResourceType, Kind: "Basic", Location: p.Key.Location, Properties: props}
}

// portView returns the Azure view of a port rule: the values as the
// client wrote them (w) where they still say what is enforced, which
// keeps declarative clients free of false drift; the normalized rule
// where they do not or where the client left a value out.
func portView(r jit.PortRule, w *jit.PortRuleText) PortRule {
	pr := PortRule{Number: r.Number, Protocol: r.Protocol, MaxRequestAccessDuration: r.MaxRequestAccessDuration}
	if len(r.AllowedSourceAddressPrefixes) == 1 {
		pr.AllowedSourceAddressPrefix = r.AllowedSourceAddressPrefixes[0]
	} else {
		pr.AllowedSourceAddressPrefixes = r.AllowedSourceAddressPrefixes
	}
	if w == nil {
		return pr
	}
	// Normalize what was written as the policy was, and compare.
	prefixes := slices.Clone(w.AllowedSourceAddressPrefixes)
	if w.AllowedSourceAddressPrefix != "" {
		prefixes = []string{w.AllowedSourceAddressPrefix}
	}
	n := jit.Policy{Ports: []jit.PortRule{{Number: r.Number, Protocol: w.Protocol, AllowedSourceAddressPrefixes: prefixes, MaxRequestAccessDuration: w.MaxRequestAccessDuration}}}
	if w.Protocol == "" {
		n.Ports[0].Protocol = r.Protocol
	}
	if jit.ValidatePolicy(&n) != nil {
		return pr
	}
	if got := n.Ports[0]; got.Protocol != r.Protocol || got.MaxRequestAccessDuration != r.MaxRequestAccessDuration ||
		!slices.Equal(got.AllowedSourceAddressPrefixes, r.AllowedSourceAddressPrefixes) {
		return pr
	}
	if w.Protocol != "" {
		pr.Protocol = w.Protocol
	}
	if w.MaxRequestAccessDuration != "" {
		pr.MaxRequestAccessDuration = w.MaxRequestAccessDuration
	}
	if len(prefixes) > 0 {
		pr.AllowedSourceAddressPrefix, pr.AllowedSourceAddressPrefixes = w.AllowedSourceAddressPrefix, w.AllowedSourceAddressPrefixes
	}
	return pr
}

// requestView returns the Azure view of a request: per VM, one port
// entry per port, end time and status, with the sources of its grants.
func requestView(r jit.Request, now time.Time, armID func(vmID string) string) AccessRequest {
	out := AccessRequest{VirtualMachines: []RequestVM{}, StartTimeUTC: r.CreatedAt.UTC(), Requestor: r.User, Justification: r.Justification}
	type portKey struct {
		port           int
		end            time.Time
		status, reason string
	}
	vmIdx := map[string]int{}
	for _, g := range r.Grants {
		i, ok := vmIdx[g.VMID]
		if !ok {
			i = len(out.VirtualMachines)
			vmIdx[g.VMID] = i
			out.VirtualMachines = append(out.VirtualMachines, RequestVM{ID: armID(g.VMID), Ports: []RequestPort{}})
		}
		v := &out.VirtualMachines[i]
		status, reason := grantStatus(g, now)
		k := portKey{g.Port, g.EndTime.UTC(), status, reason}
		src := sourceText(g.Source)
		j := slices.IndexFunc(v.Ports, func(p RequestPort) bool {
			return portKey{p.Number, p.EndTimeUTC, p.Status, p.StatusReason} == k
		})
		if j < 0 {
			v.Ports = append(v.Ports, RequestPort{Number: g.Port, AllowedSourceAddressPrefix: src, EndTimeUTC: k.end, Status: status, StatusReason: reason})
			continue
		}
		p := &v.Ports[j]
		if p.AllowedSourceAddressPrefix != "" {
			p.AllowedSourceAddressPrefixes = []string{p.AllowedSourceAddressPrefix}
			p.AllowedSourceAddressPrefix = ""
		}
		p.AllowedSourceAddressPrefixes = append(p.AllowedSourceAddressPrefixes, src)
	}
	return out
}

// grantStatus maps a grant's state to Azure's port status and reason.
func grantStatus(g jit.Grant, now time.Time) (status, reason string) {
	switch g.Status {
	case jit.GrantActive:
		if g.EndTime.After(now) {
			return StatusInitiated, ReasonUserRequested
		}
		return StatusRevoked, ReasonExpired
	case jit.GrantExpired:
		return StatusRevoked, ReasonExpired
	case jit.GrantSuperseded:
		return StatusRevoked, ReasonNewerRequestInitiated
	}
	return StatusRevoked, ReasonUserRequested
}

// sourceText shows a single-address prefix as the address, as Azure does.
func sourceText(s string) string {
	p, err := netip.ParsePrefix(s)
	if err == nil && p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return s
}

func (h *Handler) list(c *call) error {
	q := c.r.URL.Query()
	f := control.AzurePolicyFilter{Subscription: c.sub, Location: c.vars["loc"], Requests: RequestHistory}
	if rg := c.vars["rg"]; rg != "" {
		g, err := h.group(c, rg)
		if err != nil {
			return err
		}
		f.Group = g
	}
	top := h.PageSize
	if v := q.Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return apiError(http.StatusBadRequest, "InvalidQueryParameterValue", "$top must be a whole number from 1 to %d, got %q", MaxPageSize, v)
		}
		top = n
	}
	after := ""
	if v := q.Get("$skipToken"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return apiError(http.StatusBadRequest, "InvalidQueryParameterValue", "$skipToken %q is not one ajar issued", v)
		}
		after = string(b)
	}
	pols, err := h.ctl.AzurePolicies(c.r.Context(), c.a, h.defaults, f)
	if err != nil {
		return err
	}
	now := h.ctl.Now()
	all := make([]Policy, 0, len(pols))
	for _, p := range pols {
		all = append(all, h.resource(p, now))
	}
	// Pages follow the lower-cased ids, so a page boundary stays put when
	// policies come or go between calls.
	slices.SortFunc(all, func(x, y Policy) int { return cmp.Compare(strings.ToLower(x.ID), strings.ToLower(y.ID)) })
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(all, after, func(p Policy, t string) int {
			if c := cmp.Compare(strings.ToLower(p.ID), t); c != 0 {
				return c
			}
			return -1 // the token's own policy was on the previous page
		})
	}
	page := PolicyList{Value: all[start:min(start+top, len(all))]}
	if start+top < len(all) {
		nq := url.Values{"api-version": {APIVersion}, "$skipToken": {base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(page.Value[len(page.Value)-1].ID)))}}
		if q.Get("$top") != "" {
			nq.Set("$top", strconv.Itoa(top))
		}
		// The scheme and host the client used, through a trusted proxy too:
		// the SDKs' pagers refuse an http:// link on an https:// API.
		page.NextLink = (&url.URL{Scheme: httpio.Scheme(c.r), Host: c.r.Host, Path: c.r.URL.Path, RawQuery: nq.Encode()}).String()
	}
	return httpio.WriteJSON(c.w, http.StatusOK, page)
}

// one returns the policy a call's path names.
func (h *Handler) one(c *call, key control.AzureKey, requests int) (control.AzurePolicy, error) {
	pols, err := h.ctl.AzurePolicies(c.r.Context(), c.a, h.defaults, control.AzurePolicyFilter{
		Subscription: key.Subscription, Group: key.Group, Location: key.Location, Name: key.Name, Requests: requests})
	if err != nil {
		return control.AzurePolicy{}, err
	}
	if len(pols) == 0 {
		return control.AzurePolicy{}, apiError(http.StatusNotFound, "NotFound",
			"JIT network access policy '%s' was not found in resource group '%s', location '%s'", key.Name, c.vars["rg"], key.Location)
	}
	return pols[0], nil
}

func (h *Handler) get(c *call) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	p, err := h.one(c, key, RequestHistory)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(c.w, http.StatusOK, h.resource(p, h.ctl.Now()))
}

func (h *Handler) put(c *call) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	if err := h.require(c, jit.PermManagePolicy, key.Group, actionWrite); err != nil {
		return err
	}
	var in Policy
	if err := decode(c.w, c.r, &in); err != nil {
		return err
	}
	if in.Properties == nil {
		return &Error{Status: http.StatusBadRequest, Code: "BadRequest", Message: "properties is required", Target: "properties"}
	}
	byARM, err := h.vmsByARMID(c)
	if err != nil {
		return err
	}
	var vms []control.AzureVMPolicy
	for i, v := range in.Properties.VirtualMachines {
		field := fmt.Sprintf("properties.virtualMachines[%d]", i)
		vm, ok := byARM[strings.ToLower(v.ID)]
		if !ok {
			return &Error{Status: http.StatusBadRequest, Code: "BadRequest", Target: field + ".id",
				Message: fmt.Sprintf("virtual machine '%s' is not known to ajar (or not visible to %s)", v.ID, c.a.Name())}
		}
		vp := control.AzureVMPolicy{VMID: vm.ID, Ports: []jit.PortRule{}, Written: []jit.PortRuleText{}}
		for j, p := range v.Ports {
			vp.Written = append(vp.Written, jit.PortRuleText{Protocol: p.Protocol, AllowedSourceAddressPrefix: p.AllowedSourceAddressPrefix,
				AllowedSourceAddressPrefixes: slices.Clone(p.AllowedSourceAddressPrefixes), MaxRequestAccessDuration: p.MaxRequestAccessDuration})
			r := jit.PortRule{Number: p.Number, Protocol: p.Protocol, MaxRequestAccessDuration: p.MaxRequestAccessDuration,
				AllowedSourceAddressPrefixes: slices.Clone(p.AllowedSourceAddressPrefixes)}
			if p.AllowedSourceAddressPrefix != "" {
				if len(p.AllowedSourceAddressPrefixes) > 0 {
					return &Error{Status: http.StatusBadRequest, Code: "BadRequest", Target: fmt.Sprintf("%s.ports[%d]", field, j),
						Message: "allowedSourceAddressPrefix and allowedSourceAddressPrefixes exclude each other"}
				}
				r.AllowedSourceAddressPrefixes = []string{p.AllowedSourceAddressPrefix}
			}
			vp.Ports = append(vp.Ports, r)
		}
		vms = append(vms, vp)
	}
	if err := h.ctl.PutAzurePolicy(c.r.Context(), c.a, key, h.defaults, vms); err != nil {
		return err
	}
	p, err := h.one(c, key, RequestHistory)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(c.w, http.StatusOK, h.resource(p, h.ctl.Now()))
}

// vmsByARMID returns the VMs the actor may read by lower-cased ARM id.
func (h *Handler) vmsByARMID(c *call) (map[string]jit.VM, error) {
	views, _, err := h.ctl.ListVMs(c.r.Context(), c.a, control.VMListFilter{Limit: -1})
	if err != nil {
		return nil, err
	}
	out := make(map[string]jit.VM, len(views))
	for _, v := range views {
		out[strings.ToLower(h.vmARMID(v.VM))] = v.VM
	}
	return out, nil
}

func (h *Handler) delete(c *call) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	if err := h.require(c, jit.PermManagePolicy, key.Group, actionDelete); err != nil {
		return err
	}
	n, err := h.ctl.DeleteAzurePolicy(c.r.Context(), c.a, key, h.defaults)
	if err != nil {
		return err
	}
	if n == 0 {
		c.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Handler) initiate(c *call) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var in InitiateRequest
	if err := decode(c.w, c.r, &in); err != nil {
		return err
	}
	p, err := h.one(c, key, 0)
	if err != nil {
		// Permission before existence; a caller without request rights
		// on a policy that exists is refused by the control plane, which
		// logs the refusal.
		if isStatus(err, http.StatusNotFound) {
			if derr := h.require(c, jit.PermRequest, key.Group, actionInitiate); derr != nil {
				return derr
			}
		}
		return err
	}
	members := map[string]jit.VM{}
	arm := map[string]string{}
	for _, m := range p.Members {
		id := h.vmARMID(m.VM)
		members[strings.ToLower(id)], arm[m.VM.ID] = m.VM, id
	}
	req := jit.AccessRequest{Justification: in.Justification, VirtualMachines: []jit.VMRequest{}}
	idx := map[string]int{}
	// where maps the request's paths, as the control plane's refusals name
	// them, back to the caller's (VMs named twice become one, a list of
	// sources becomes one port each).
	where := map[string]string{}
	for i, v := range in.VirtualMachines {
		field := fmt.Sprintf("virtualMachines[%d]", i)
		vm, ok := members[strings.ToLower(v.ID)]
		if !ok {
			return &Error{Status: http.StatusBadRequest, Code: "BadRequest", Target: field + ".id",
				Message: fmt.Sprintf("virtual machine '%s' is not in JIT network access policy '%s'", v.ID, key.Name)}
		}
		k, ok := idx[vm.ID]
		if !ok {
			k = len(req.VirtualMachines)
			idx[vm.ID] = k
			req.VirtualMachines = append(req.VirtualMachines, jit.VMRequest{ID: vm.ID})
			where[fmt.Sprintf("virtualMachines[%d]", k)] = field
		}
		for j, port := range v.Ports {
			pf := fmt.Sprintf("%s.ports[%d]", field, j)
			sources := port.AllowedSourceAddressPrefixes
			if port.AllowedSourceAddressPrefix != "" {
				if len(sources) > 0 {
					return &Error{Status: http.StatusBadRequest, Code: "BadRequest", Target: pf,
						Message: "allowedSourceAddressPrefix and allowedSourceAddressPrefixes exclude each other"}
				}
				sources = []string{port.AllowedSourceAddressPrefix}
			}
			if len(sources) == 0 {
				sources = []string{""} // the caller's address
			}
			end, err := endTime(port.EndTimeUTC, pf)
			if err != nil {
				return err
			}
			for n, s := range sources {
				cp := fmt.Sprintf("virtualMachines[%d].ports[%d]", k, len(req.VirtualMachines[k].Ports))
				where[cp] = pf
				if len(port.AllowedSourceAddressPrefixes) > 0 {
					where[cp+".allowedSourceAddressPrefix"] = fmt.Sprintf("%s.allowedSourceAddressPrefixes[%d]", pf, n)
				}
				req.VirtualMachines[k].Ports = append(req.VirtualMachines[k].Ports,
					jit.PortRequest{Number: port.Number, AllowedSourceAddressPrefix: s, Duration: port.Duration, EndTimeUTC: end})
			}
		}
	}
	r, err := h.ctl.RequestAccessNow(c.r.Context(), c.a, req) // Azure answers at once: no waiting for approval
	if err != nil {
		return callerTarget(err, where)
	}
	return httpio.WriteJSON(c.w, http.StatusAccepted, requestView(r, h.ctl.Now(), func(vmID string) string { return arm[vmID] }))
}

// callerTarget returns err with its target, a path of the request as the
// control plane saw it, turned into the caller's path by where (the
// longest part of it where knows).
func callerTarget(err error, where map[string]string) error {
	e, ok := err.(*jit.Error)
	if !ok || e.Target == "" {
		return err
	}
	for i := len(e.Target); i > 0; i = strings.LastIndexByte(e.Target[:i], '.') {
		if w, ok := where[e.Target[:i]]; ok {
			out := *e
			out.Target = w + e.Target[i:]
			return &out
		}
	}
	return err
}

// endTime returns an initiate port's endTimeUtc in RFC 3339; a time with
// no zone is UTC, as the field's name says.
func endTime(s, field string) (string, error) {
	if s == "" {
		return "", nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return s, nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	if err != nil {
		return "", &Error{Status: http.StatusBadRequest, Code: "BadRequest", Target: field + ".endTimeUtc",
			Message: fmt.Sprintf("endTimeUtc %q is not a UTC time such as 2026-01-02T15:04:05Z", s)}
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}
