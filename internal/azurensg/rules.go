package azurensg

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/ajarhq/ajar/internal/jit"
)

// Azure's limits on security rules.
const (
	minPriority = 100
	maxPriority = 4096
	maxNameLen  = 80
	maxDescLen  = 140
)

// Rule name prefixes.
const (
	prefix      = "ajar-"
	prefixDeny  = prefix + "deny-"
	prefixAllow = prefix + "allow-"
)

// vmTag is the short, stable mark of a VM in its rules' names.
func vmTag(armID string) string {
	return hash8(strings.ToLower(armID))
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// ownedBy reports whether the rule named name is ajar's rule for the VM
// with tag.
func ownedBy(name, tag string) bool {
	return strings.HasPrefix(name, prefix) && strings.HasSuffix(name, "-"+tag)
}

var badNameChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// ruleName is kind + id + "-" + tag, with id cleaned of characters Azure
// refuses and shortened so the name fits; an id that had to change gets a
// hash of the original so two ids never share a name.
func ruleName(kind, id, tag string) string {
	room := maxNameLen - len(kind) - 1 - len(tag)
	clean := badNameChars.ReplaceAllString(id, "-")
	if clean != id || len(clean) > room {
		h := hash8(id)
		if len(clean) > room-len(h)-1 {
			clean = clean[:room-len(h)-1]
		}
		clean += "-" + h
	}
	return kind + clean + "-" + tag
}

// ruleSpec is one rule ajar wants in an NSG.
type ruleSpec struct {
	name        string
	description string
	access      armnetwork.SecurityRuleAccess
	protocol    armnetwork.SecurityRuleProtocol
	source      string
	destination string
	ports       []int // sorted
	priority    int32
}

func (s ruleSpec) isDeny() bool { return s.access == armnetwork.SecurityRuleAccessDeny }

// rule is the SecurityRule to PUT for s.
func (s ruleSpec) rule() armnetwork.SecurityRule {
	ports := make([]*string, len(s.ports))
	for i, p := range s.ports {
		ports[i] = to.Ptr(strconv.Itoa(p))
	}
	return armnetwork.SecurityRule{
		Name: to.Ptr(s.name),
		Properties: &armnetwork.SecurityRulePropertiesFormat{
			Description:              to.Ptr(s.description),
			Access:                   to.Ptr(s.access),
			Direction:                to.Ptr(armnetwork.SecurityRuleDirectionInbound),
			Priority:                 to.Ptr(s.priority),
			Protocol:                 to.Ptr(s.protocol),
			SourceAddressPrefix:      to.Ptr(s.source),
			SourcePortRange:          to.Ptr("*"),
			DestinationAddressPrefix: to.Ptr(s.destination),
			DestinationPortRanges:    ports,
		},
	}
}

// sameAs reports whether r already is s, priority aside.
func (s ruleSpec) sameAs(r *armnetwork.SecurityRule) bool {
	p := r.Properties
	if p == nil {
		return false
	}
	ports, ok := rulePorts(p)
	if !ok || len(ports) != len(s.ports) {
		return false
	}
	for i, pr := range ports {
		if pr.lo != pr.hi || pr.lo != s.ports[i] {
			return false
		}
	}
	return deref(p.Description) == s.description &&
		deref(p.Access) == s.access &&
		deref(p.Direction) == armnetwork.SecurityRuleDirectionInbound &&
		strings.EqualFold(string(deref(p.Protocol)), string(s.protocol)) &&
		samePrefix(deref(p.SourceAddressPrefix), s.source) && len(p.SourceAddressPrefixes) == 0 &&
		len(p.SourceApplicationSecurityGroups) == 0 &&
		deref(p.SourcePortRange) == "*" && len(p.SourcePortRanges) == 0 &&
		samePrefix(deref(p.DestinationAddressPrefix), s.destination) && len(p.DestinationAddressPrefixes) == 0 &&
		len(p.DestinationApplicationSecurityGroups) == 0
}

// azureProto maps a jit protocol to Azure's.
func azureProto(p string) (armnetwork.SecurityRuleProtocol, error) {
	switch strings.ToUpper(p) {
	case jit.ProtoTCP:
		return armnetwork.SecurityRuleProtocolTCP, nil
	case jit.ProtoUDP:
		return armnetwork.SecurityRuleProtocolUDP, nil
	case jit.ProtoAny:
		return armnetwork.SecurityRuleProtocolAsterisk, nil
	}
	return "", jit.Invalid("protocol", "protocol must be TCP, UDP or *, not %q", p)
}

// desired returns the rules ajar wants for the VM with ARM resource vmr at
// ip to make st true: its Deny rules (one per protocol, usually one) and one
// Allow rule per grant. An empty lock wants nothing. Grants from the other
// address family than ip's cannot be expressed in an NSG rule (Azure refuses
// them); they are left out and returned in skipped.
func desired(vmr resource, ip netip.Addr, st jit.DesiredState) (denies, allows []ruleSpec, skipped []string, err error) {
	if len(st.Lock) == 0 {
		return nil, nil, nil, nil
	}
	tag := vmTag(vmr.id)
	dest := ip.String()

	// Per port, the protocols locked; TCP and UDP together are "*".
	const tcp, udp = 1, 2
	locked := map[int]int{}
	for _, l := range st.Lock {
		if l.Port < 1 || l.Port > 65535 {
			return nil, nil, nil, jit.Invalid("lock", "port %d out of range", l.Port)
		}
		proto, err := azureProto(l.Protocol)
		if err != nil {
			return nil, nil, nil, err
		}
		switch proto {
		case armnetwork.SecurityRuleProtocolTCP:
			locked[l.Port] |= tcp
		case armnetwork.SecurityRuleProtocolUDP:
			locked[l.Port] |= udp
		default:
			locked[l.Port] |= tcp | udp
		}
	}
	byProto := map[armnetwork.SecurityRuleProtocol][]int{}
	for port, m := range locked {
		proto := armnetwork.SecurityRuleProtocolAsterisk
		switch m {
		case tcp:
			proto = armnetwork.SecurityRuleProtocolTCP
		case udp:
			proto = armnetwork.SecurityRuleProtocolUDP
		}
		byProto[proto] = append(byProto[proto], port)
	}
	for _, proto := range []armnetwork.SecurityRuleProtocol{
		armnetwork.SecurityRuleProtocolAsterisk, armnetwork.SecurityRuleProtocolTCP, armnetwork.SecurityRuleProtocolUDP,
	} {
		ports := byProto[proto]
		if len(ports) == 0 {
			continue
		}
		slices.Sort(ports)
		id := vmr.name
		if len(byProto) > 1 {
			id += "-" + protoWord(proto)
		}
		denies = append(denies, ruleSpec{
			name:        ruleName(prefixDeny, id, tag),
			description: clip(fmt.Sprintf("ajar JIT lock for VM %s in resource group %s", vmr.name, vmr.group)),
			access:      armnetwork.SecurityRuleAccessDeny,
			protocol:    proto,
			source:      "*",
			destination: dest,
			ports:       ports,
		})
	}

	seen := map[string]bool{}
	for _, g := range st.Grants {
		if g.Port < 1 || g.Port > 65535 {
			return nil, nil, nil, jit.Invalid("grants", "grant %s: port %d out of range", g.ID, g.Port)
		}
		proto, err := azureProto(g.Protocol)
		if err != nil {
			return nil, nil, nil, err
		}
		src, err := netip.ParsePrefix(g.Source)
		if err != nil {
			a, aerr := netip.ParseAddr(g.Source)
			if aerr != nil {
				return nil, nil, nil, jit.Invalid("grants", "grant %s: source %q is not a CIDR prefix", g.ID, g.Source)
			}
			src = netip.PrefixFrom(a, a.BitLen())
		}
		if src.Addr().Is4() != ip.Is4() {
			skipped = append(skipped, g.ID)
			continue
		}
		name := ruleName(prefixAllow, g.ID, tag)
		if seen[name] {
			return nil, nil, nil, jit.Invalid("grants", "grant %s listed twice", g.ID)
		}
		seen[name] = true
		desc := fmt.Sprintf("ajar JIT grant %s for VM %s in resource group %s", g.ID, vmr.name, vmr.group)
		if !g.EndTime.IsZero() {
			desc += ", until " + g.EndTime.UTC().Format(time.RFC3339)
		}
		allows = append(allows, ruleSpec{
			name:        name,
			description: clip(desc),
			access:      armnetwork.SecurityRuleAccessAllow,
			protocol:    proto,
			source:      src.Masked().String(),
			destination: dest,
			ports:       []int{g.Port},
		})
	}
	slices.SortFunc(allows, func(a, b ruleSpec) int { return strings.Compare(a.name, b.name) })
	return denies, allows, skipped, nil
}

func protoWord(p armnetwork.SecurityRuleProtocol) string {
	switch p {
	case armnetwork.SecurityRuleProtocolTCP:
		return "tcp"
	case armnetwork.SecurityRuleProtocolUDP:
		return "udp"
	}
	return "any"
}

// clip shortens a description to Azure's limit, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxDescLen {
		return s
	}
	cut := maxDescLen - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// samePrefix reports whether two address prefixes of rules are the same,
// whether or not a single address carries its /32 or /128.
func samePrefix(a, b string) bool {
	if a == b {
		return true
	}
	pa, errA := parsePrefix(a)
	pb, errB := parsePrefix(b)
	return errA == nil && errB == nil && pa == pb
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi int }

// rulePorts returns the destination port ranges of a rule; ok is false when
// one of them cannot be parsed.
func rulePorts(p *armnetwork.SecurityRulePropertiesFormat) (ranges []portRange, ok bool) {
	var specs []string
	if p.DestinationPortRange != nil {
		specs = append(specs, *p.DestinationPortRange)
	}
	for _, s := range p.DestinationPortRanges {
		if s != nil {
			specs = append(specs, *s)
		}
	}
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if s == "*" {
			ranges = append(ranges, portRange{0, 65535})
			continue
		}
		lo, hi, isRange := strings.Cut(s, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil {
			return ranges, false
		}
		ranges = append(ranges, portRange{a, b})
	}
	return ranges, true
}

// coversPort reports whether the rule may apply to port. A rule whose
// ports ajar cannot parse is taken to cover every port.
func coversPort(p *armnetwork.SecurityRulePropertiesFormat, port int) bool {
	ranges, ok := rulePorts(p)
	if !ok {
		return true
	}
	for _, r := range ranges {
		if r.lo <= port && port <= r.hi {
			return true
		}
	}
	return false
}

// coversProto reports whether a rule of protocol ruleProto applies to
// traffic of protocol proto ("*" meaning either).
func coversProto(ruleProto armnetwork.SecurityRuleProtocol, proto armnetwork.SecurityRuleProtocol) bool {
	return ruleProto == armnetwork.SecurityRuleProtocolAsterisk || proto == armnetwork.SecurityRuleProtocolAsterisk ||
		strings.EqualFold(string(ruleProto), string(proto))
}

// coversDest reports whether the rule may apply to traffic to ip. Service
// tags and application security groups cannot be resolved here, so they
// are taken to cover it.
func coversDest(p *armnetwork.SecurityRulePropertiesFormat, ip netip.Addr) bool {
	if len(p.DestinationApplicationSecurityGroups) > 0 {
		return true
	}
	prefixes := p.DestinationAddressPrefixes
	if p.DestinationAddressPrefix != nil {
		prefixes = append([]*string{p.DestinationAddressPrefix}, prefixes...)
	}
	if len(prefixes) == 0 {
		return true
	}
	for _, s := range prefixes {
		if s != nil && prefixCovers(*s, ip) {
			return true
		}
	}
	return false
}

// prefixCovers reports whether an address prefix of a rule ("*", a service
// tag, an address or CIDR) may hold ip; tags count as holding it.
func prefixCovers(s string, ip netip.Addr) bool {
	s = strings.TrimSpace(s)
	if s == "*" {
		return true
	}
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Contains(ip)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a == ip
	}
	return true // a service tag
}

// broadSources are the source prefixes that mean "anyone on the internet".
var broadSources = []string{"*", "Internet", "Any", "0.0.0.0/0", "::/0"}

// fromAnywhere reports whether the rule's sources include the whole
// internet.
func fromAnywhere(p *armnetwork.SecurityRulePropertiesFormat) bool {
	prefixes := p.SourceAddressPrefixes
	if p.SourceAddressPrefix != nil {
		prefixes = append([]*string{p.SourceAddressPrefix}, prefixes...)
	}
	for _, s := range prefixes {
		if s != nil && containsFold(broadSources, strings.TrimSpace(*s)) {
			return true
		}
	}
	return false
}

func isInbound(p *armnetwork.SecurityRulePropertiesFormat) bool {
	return p != nil && deref(p.Direction) == armnetwork.SecurityRuleDirectionInbound
}
