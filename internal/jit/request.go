package jit

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// AccessRequest is what a user submits to open ports.
type AccessRequest struct {
	VirtualMachines []VMRequest `json:"virtualMachines"`
	Justification   string      `json:"justification"`
	// IdempotencyKey, when set, makes the request safe to retry: the same
	// user sending the same key gets the request the first one made (the
	// REST API takes it from the Idempotency-Key header).
	IdempotencyKey string `json:"-"`
}

// MaxIdempotencyKey is the longest Idempotency-Key taken.
const MaxIdempotencyKey = 255

// CheckIdempotencyKey checks a request's Idempotency-Key: 1 to 255
// visible ASCII characters.
func CheckIdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdempotencyKey {
		return Invalid("Idempotency-Key", "Idempotency-Key must be 1 to %d characters, got %d", MaxIdempotencyKey, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return Invalid("Idempotency-Key", "Idempotency-Key must be visible ASCII characters without spaces")
		}
	}
	return nil
}

// VMRequest names one VM (by id) and the ports asked for on it.
type VMRequest struct {
	ID    string        `json:"id"`
	Ports []PortRequest `json:"ports"`
}

// PortRequest is one port asked for. Protocol, source and duration are
// optional: the rule's protocol, the caller's address and the rule's
// maximum fill them in.
type PortRequest struct {
	Number                     int    `json:"number"`
	Protocol                   string `json:"protocol,omitempty"`
	AllowedSourceAddressPrefix string `json:"allowedSourceAddressPrefix,omitempty"`
	Duration                   string `json:"duration,omitempty"`
	EndTimeUTC                 string `json:"endTimeUtc,omitempty"`
}

// Requester is who asks, from where, and whether they may name a source
// other than their own address.
type Requester struct {
	User      string
	Address   netip.Addr
	AnySource bool
}

// Justification limits.
const MaxJustification = 1024

// MaxRequestVMs is the most VMs one request may name.
const MaxRequestVMs = 100

// CheckRequestShape validates what can be checked without the VMs: sizes,
// justification length, duplicate entries.
func CheckRequestShape(r *AccessRequest) error {
	if len(r.VirtualMachines) == 0 {
		return Invalid("virtualMachines", "name at least one VM")
	}
	if len(r.VirtualMachines) > MaxRequestVMs {
		return Invalid("virtualMachines", "at most %d VMs per request, got %d", MaxRequestVMs, len(r.VirtualMachines))
	}
	if len(r.Justification) > MaxJustification {
		return Invalid("justification", "justification is longer than %d bytes", MaxJustification)
	}
	seen := map[string]bool{}
	for i, v := range r.VirtualMachines {
		f := fmt.Sprintf("virtualMachines[%d]", i)
		if v.ID == "" {
			return Invalid(f+".id", "VM id is required")
		}
		if seen[v.ID] {
			return Invalid(f+".id", "VM %s is named twice", v.ID)
		}
		seen[v.ID] = true
		if len(v.Ports) > 64 {
			return Invalid(f+".ports", "at most 64 ports per VM, got %d", len(v.Ports))
		}
	}
	return nil
}

// PlanGrant checks one requested port against the VM's policy and the
// requester, and returns the grant it would open (without ids). field is
// the request path of the port, used in error targets. Every refusal names
// the failing check.
func PlanGrant(vm VM, pol Policy, pr PortRequest, field string, who Requester, now time.Time) (Grant, error) {
	var rule *PortRule
	proto := ""
	if pr.Protocol != "" {
		p, err := NormalizeProtocol(pr.Protocol)
		if err != nil {
			return Grant{}, Invalid(field+".protocol", "%v", err)
		}
		proto = p
	}
	if pr.Number < 1 || pr.Number > 65535 {
		return Grant{}, Invalid(field+".number", "port number must be between 1 and 65535, got %d", pr.Number)
	}
	var candidates []*PortRule
	for i := range pol.Ports {
		if pol.Ports[i].Number == pr.Number {
			candidates = append(candidates, &pol.Ports[i])
		}
	}
	if len(candidates) == 0 {
		return Grant{}, Invalid(field+".number", "port %d is not in the JIT policy of VM %s", pr.Number, vm.Name)
	}
	for _, c := range candidates {
		if proto == "" || c.Protocol == proto || c.Protocol == ProtoAny {
			if rule != nil {
				return Grant{}, Invalid(field+".protocol", "port %d of VM %s has rules for several protocols; name one", pr.Number, vm.Name)
			}
			rule = c
		}
	}
	if rule == nil {
		return Grant{}, Invalid(field+".protocol", "protocol %s does not match the policy of VM %s for port %d (%s)", proto, vm.Name, pr.Number, candidates[0].Protocol)
	}
	if proto == "" {
		proto = rule.Protocol
	}

	own := netip.PrefixFrom(who.Address, who.Address.BitLen())
	src, err := who.SourceOf(pr)
	if err != nil {
		return Grant{}, Invalid(field+".allowedSourceAddressPrefix", "%v", err)
	}
	if !src.IsValid() {
		return Grant{}, Invalid(field+".allowedSourceAddressPrefix", "the caller's address is unknown; name a source")
	}
	if src != own && !who.AnySource {
		return Grant{}, &Error{Code: EForbidden, Target: field + ".allowedSourceAddressPrefix",
			Message: fmt.Sprintf("user %s may request access only for their own address %s, not %s (role requester-any-source needed)", who.User, who.Address, src)}
	}
	if !rule.Allows(src) {
		return Grant{}, Invalid(field+".allowedSourceAddressPrefix", "source %s is outside the allowed prefixes of port %d on VM %s (%s)", src, pr.Number, vm.Name, strings.Join(rule.AllowedSourceAddressPrefixes, ", "))
	}

	max := rule.MaxDuration()
	var end time.Time
	switch {
	case pr.Duration != "" && pr.EndTimeUTC != "":
		return Grant{}, Invalid(field+".duration", "give either duration or endTimeUtc, not both")
	case pr.Duration != "":
		d, err := ParseISODuration(pr.Duration)
		if err != nil {
			return Grant{}, Invalid(field+".duration", "%v", err)
		}
		if d <= 0 {
			return Grant{}, Invalid(field+".duration", "duration must be positive, got %s", pr.Duration)
		}
		if d > max {
			return Grant{}, Invalid(field+".duration", "duration %s exceeds the maximum %s of port %d on VM %s", pr.Duration, rule.MaxRequestAccessDuration, pr.Number, vm.Name)
		}
		end = now.Add(d)
	case pr.EndTimeUTC != "":
		t, err := time.Parse(time.RFC3339Nano, pr.EndTimeUTC)
		if err != nil {
			return Grant{}, Invalid(field+".endTimeUtc", "%q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", pr.EndTimeUTC)
		}
		if !t.After(now) {
			return Grant{}, Invalid(field+".endTimeUtc", "end time %s is in the past", pr.EndTimeUTC)
		}
		if t.Sub(now) > max+time.Second {
			return Grant{}, Invalid(field+".endTimeUtc", "end time %s is more than the maximum %s of port %d on VM %s away", pr.EndTimeUTC, rule.MaxRequestAccessDuration, pr.Number, vm.Name)
		}
		end = t
	default:
		end = now.Add(max)
	}
	return Grant{
		VMID: vm.ID, VMName: vm.Name, Group: vm.Group,
		Port: pr.Number, Protocol: proto, Source: src.String(), User: who.User,
		StartTime: now.UTC(), EndTime: end.UTC(), Status: GrantActive,
	}, nil
}

// SourceOf returns the source a port request asks access for: its
// allowedSourceAddressPrefix, or the requester's own address when it names
// none or "my-ip" (invalid when that address is unknown).
func (who Requester) SourceOf(pr PortRequest) (netip.Prefix, error) {
	if s := strings.TrimSpace(pr.AllowedSourceAddressPrefix); s != "" && !strings.EqualFold(s, "my-ip") {
		return ParsePrefix(s)
	}
	return netip.PrefixFrom(who.Address, who.Address.BitLen()), nil
}

// Overlaps reports whether a newer grant g replaces the active grant o:
// same user, VM, port and source, and protocols that overlap. Another
// user's grant for the same source (a shared NAT address, say) stays: a
// request must not end someone else's access.
func (g Grant) Overlaps(o Grant) bool {
	return g.User == o.User && g.VMID == o.VMID && g.Port == o.Port && g.Source == o.Source &&
		(g.Protocol == o.Protocol || g.Protocol == ProtoAny || o.Protocol == ProtoAny)
}

// EndedState says how a grant ended, for people: "revoked by alice at
// 2026-12-02 14:03:02 UTC", "expired at ...", "superseded at ...".
func EndedState(g Grant) string {
	at := g.EndTime
	if g.EndedAt != nil {
		at = *g.EndedAt
	}
	when := at.UTC().Format("2006-01-02 15:04:05") + " UTC"
	switch g.Status {
	case GrantRevoked:
		if g.EndedBy != "" {
			return "revoked by " + g.EndedBy + " at " + when
		}
		return "revoked at " + when
	case GrantActive:
		return "active until " + g.EndTime.UTC().Format("2006-01-02 15:04:05") + " UTC"
	default:
		return g.Status + " at " + when
	}
}
