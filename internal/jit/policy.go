package jit

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// MaxPolicyPorts is the most port rules a JIT policy may have.
const MaxPolicyPorts = 64

// ValidatePolicy checks p and puts it in canonical form: protocols upper
// case, prefixes masked, durations in canonical ISO 8601, defaults filled
// in. Errors name the field at fault, such as "ports[1].protocol".
func ValidatePolicy(p *Policy) error {
	if len(p.Ports) == 0 {
		return Invalid("ports", "a JIT policy needs at least one port")
	}
	if len(p.Ports) > MaxPolicyPorts {
		return Invalid("ports", "a JIT policy may have at most %d ports, got %d", MaxPolicyPorts, len(p.Ports))
	}
	if p.Approval != nil {
		if err := validateApproval(p.Approval); err != nil {
			return err
		}
	}
	for i := range p.Ports {
		r := &p.Ports[i]
		field := fmt.Sprintf("ports[%d]", i)
		if r.Number < 1 || r.Number > 65535 {
			return Invalid(field+".number", "port number must be between 1 and 65535, got %d", r.Number)
		}
		proto, err := NormalizeProtocol(r.Protocol)
		if err != nil {
			return Invalid(field+".protocol", "%v", err)
		}
		r.Protocol = proto
		if len(r.AllowedSourceAddressPrefixes) == 0 {
			r.AllowedSourceAddressPrefixes = []string{"*"}
		}
		if len(r.AllowedSourceAddressPrefixes) > 256 {
			return Invalid(field+".allowedSourceAddressPrefixes", "at most 256 prefixes, got %d", len(r.AllowedSourceAddressPrefixes))
		}
		for j, s := range r.AllowedSourceAddressPrefixes {
			if s == "*" {
				if len(r.AllowedSourceAddressPrefixes) > 1 {
					return Invalid(fmt.Sprintf("%s.allowedSourceAddressPrefixes[%d]", field, j), `"*" (any source) cannot be combined with other prefixes`)
				}
				continue
			}
			pfx, err := ParsePrefix(s)
			if err != nil {
				return Invalid(fmt.Sprintf("%s.allowedSourceAddressPrefixes[%d]", field, j), "%v", err)
			}
			r.AllowedSourceAddressPrefixes[j] = pfx.String()
		}
		d := DefaultMaxDuration
		if r.MaxRequestAccessDuration != "" {
			if d, err = ParseISODuration(r.MaxRequestAccessDuration); err != nil {
				return Invalid(field+".maxRequestAccessDuration", "%v", err)
			}
		}
		if d < MinMaxDuration || d > MaxMaxDuration {
			return Invalid(field+".maxRequestAccessDuration", "maximum request duration must be between PT5M and PT24H, got %s", r.MaxRequestAccessDuration)
		}
		r.MaxRequestAccessDuration = FormatISODuration(d)
		for k := range i {
			o := p.Ports[k]
			if o.Number == r.Number && (o.Protocol == r.Protocol || o.Protocol == ProtoAny || r.Protocol == ProtoAny) {
				return Invalid(field, "port %d/%s overlaps ports[%d] (%d/%s)", r.Number, r.Protocol, k, o.Number, o.Protocol)
			}
		}
	}
	return nil
}

// NormalizeProtocol returns TCP, UDP or * for any casing of them.
func NormalizeProtocol(s string) (string, error) {
	switch strings.ToUpper(s) {
	case ProtoTCP:
		return ProtoTCP, nil
	case ProtoUDP:
		return ProtoUDP, nil
	case ProtoAny, "ANY":
		return ProtoAny, nil
	}
	return "", fmt.Errorf("protocol must be TCP, UDP or *, got %q", s)
}

// ParsePrefix parses an IPv4 or IPv6 address or CIDR prefix; a single
// address becomes a /32 or /128. Host bits are cleared.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 prefixes are not supported", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// MaxDuration returns the rule's maximum request duration.
func (r PortRule) MaxDuration() time.Duration {
	d, err := ParseISODuration(r.MaxRequestAccessDuration)
	if err != nil {
		return DefaultMaxDuration
	}
	return d
}

// Allows reports whether src lies inside one of the rule's allowed prefixes.
func (r PortRule) Allows(src netip.Prefix) bool {
	for _, s := range r.AllowedSourceAddressPrefixes {
		if s == "*" {
			return true
		}
		p, err := ParsePrefix(s)
		if err == nil && p.Addr().Is4() == src.Addr().Is4() && p.Bits() <= src.Bits() && p.Contains(src.Addr()) {
			return true
		}
	}
	return false
}
