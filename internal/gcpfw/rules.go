package gcpfw

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/ajarhq/ajar/internal/jit"
)

// instanceRef names an instance: jit.VM.ExternalID is its String.
type instanceRef struct{ project, zone, name string }

func (r instanceRef) String() string {
	return "projects/" + r.project + "/zones/" + r.zone + "/instances/" + r.name
}

// trimAPI drops the API's URL prefix from a self link.
func trimAPI(s string) string {
	if i := strings.Index(s, "/compute/v1/"); i >= 0 {
		return s[i+len("/compute/v1/"):]
	}
	if i := strings.Index(s, "/compute/beta/"); i >= 0 {
		return s[i+len("/compute/beta/"):]
	}
	return s
}

// parseRef parses "projects/P/zones/Z/instances/N" (or the instance's self
// link).
func parseRef(id string) (instanceRef, error) {
	parts := strings.Split(trimAPI(id), "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "zones" || parts[4] != "instances" ||
		parts[1] == "" || parts[3] == "" || parts[5] == "" {
		return instanceRef{}, jit.Invalid("externalId", "not a Compute Engine instance (projects/PROJECT/zones/ZONE/instances/NAME): %q", id)
	}
	return instanceRef{project: parts[1], zone: parts[3], name: parts[5]}, nil
}

// networkRef names a VPC network; firewall rules live in its project
// (the host project of a Shared VPC).
type networkRef struct{ project, name string }

func (n networkRef) String() string { return "projects/" + n.project + "/global/networks/" + n.name }

func parseNetwork(url string) (networkRef, bool) {
	parts := strings.Split(trimAPI(url), "/")
	if len(parts) != 5 || parts[0] != "projects" || parts[2] != "global" || parts[3] != "networks" {
		return networkRef{}, false
	}
	return networkRef{project: parts[1], name: parts[4]}, true
}

// networksOf returns the distinct networks of in's network interfaces,
// the first interface's first.
func networksOf(in *computepb.Instance) []networkRef {
	var out []networkRef
	for _, nic := range in.GetNetworkInterfaces() {
		if n, ok := parseNetwork(nic.GetNetwork()); ok && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// vmKey is the 8 hex digits that name an instance in ajar's rules and
// tag: from its lower-cased ExternalID, so that they can be found again
// when the instance is gone.
func vmKey(r instanceRef) string { return hash(strings.ToLower(r.String()), 8) }

// Tag is the network tag ajar puts on an instance it locks; its rules
// target it.
func Tag(r instanceRef) string { return "ajar-jit-" + vmKey(r) }

// rulePrefix starts the name of every rule ajar keeps for the instance;
// a rule is ajar's for it if and only if its name starts so.
func rulePrefix(r instanceRef) string { return "ajar-" + vmKey(r) + "-" }

// netKey tells a VM's rules in different networks of one project apart.
func netKey(n networkRef) string { return hash(n.String(), 6) }

func denyName(r instanceRef, n networkRef, family string) string {
	return rulePrefix(r) + netKey(n) + "-deny" + family
}

func allowName(r instanceRef, n networkRef, grantID string) string {
	return rulePrefix(r) + netKey(n) + "-allow-" + hash(grantID, 12)
}

// DefaultDenyPriority is the priority of the lock when no rule of
// someone else that opens the locked ports to the internet comes earlier:
// Google Cloud's default priority, so that the lock wins over the rules
// created with the default (a deny wins a tie).
const DefaultDenyPriority = 1000

// protoEntry is one protocol and its ports in a rule.
type protoEntry struct {
	proto string
	ports []string
}

// spec is one firewall rule ajar wants.
type spec struct {
	name        string
	network     networkRef
	priority    int32
	allow       bool
	sources     []string
	entries     []protoEntry
	tag         string
	description string
}

// protocols maps a jit protocol to the firewall's.
func protocols(p string) []string {
	switch strings.ToUpper(p) {
	case jit.ProtoTCP:
		return []string{"tcp"}
	case jit.ProtoUDP:
		return []string{"udp"}
	}
	return []string{"tcp", "udp"}
}

// lockEntries groups the locked ports by protocol.
func lockEntries(lock []jit.PortLock) []protoEntry {
	byProto := map[string][]int{}
	for _, l := range lock {
		for _, p := range protocols(l.Protocol) {
			if !slices.Contains(byProto[p], l.Port) {
				byProto[p] = append(byProto[p], l.Port)
			}
		}
	}
	var out []protoEntry
	for _, p := range []string{"tcp", "udp"} {
		ports := byProto[p]
		if len(ports) == 0 {
			continue
		}
		slices.Sort(ports)
		e := protoEntry{proto: p}
		for _, port := range ports {
			e.ports = append(e.ports, strconv.Itoa(port))
		}
		out = append(out, e)
	}
	return out
}

func (s spec) firewall() *computepb.Firewall {
	fw := &computepb.Firewall{
		Name:         &s.name,
		Network:      ptr(s.network.String()),
		Priority:     &s.priority,
		Direction:    ptr("INGRESS"),
		Disabled:     ptr(false),
		SourceRanges: s.sources,
		TargetTags:   []string{s.tag},
		Description:  &s.description,
	}
	for _, e := range s.entries {
		if s.allow {
			fw.Allowed = append(fw.Allowed, &computepb.Allowed{IPProtocol: ptr(e.proto), Ports: e.ports})
		} else {
			fw.Denied = append(fw.Denied, &computepb.Denied{IPProtocol: ptr(e.proto), Ports: e.ports})
		}
	}
	return fw
}

// sameAs reports whether fw already is s.
func (s spec) sameAs(fw *computepb.Firewall) bool {
	if fw.GetPriority() != s.priority || fw.GetDirection() != "INGRESS" || fw.GetDisabled() ||
		!slices.Equal(sorted(fw.SourceRanges), sorted(s.sources)) || !slices.Equal(fw.TargetTags, []string{s.tag}) ||
		len(fw.TargetServiceAccounts) > 0 || len(fw.SourceTags) > 0 || len(fw.DestinationRanges) > 0 ||
		fw.GetDescription() != s.description {
		return false
	}
	got := entries(fw)
	if s.allow != (len(fw.Allowed) > 0) || len(got) != len(s.entries) {
		return false
	}
	for i, e := range got {
		if e.proto != s.entries[i].proto || !slices.Equal(e.ports, s.entries[i].ports) {
			return false
		}
	}
	return true
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// entries returns the protocols and ports of fw (allowed or denied).
func entries(fw *computepb.Firewall) []protoEntry {
	var out []protoEntry
	for _, a := range fw.Allowed {
		out = append(out, protoEntry{a.GetIPProtocol(), a.Ports})
	}
	for _, d := range fw.Denied {
		out = append(out, protoEntry{d.GetIPProtocol(), d.Ports})
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// ---- evaluating other rules ----

// target is what decides whether a rule applies to an instance.
type target struct {
	network         networkRef
	tags            []string
	serviceAccounts []string
}

func targetOf(in *computepb.Instance, n networkRef, extraTag string) target {
	t := target{network: n, tags: slices.Clone(in.GetTags().GetItems())}
	if extraTag != "" && !slices.Contains(t.tags, extraTag) {
		t.tags = append(t.tags, extraTag)
	}
	for _, sa := range in.ServiceAccounts {
		t.serviceAccounts = append(t.serviceAccounts, sa.GetEmail())
	}
	return t
}

// appliesTo reports whether fw is an enabled ingress rule of t's network
// that applies to the instance: by target tag, target service account, or
// to all instances when it names neither.
func appliesTo(fw *computepb.Firewall, t target) bool {
	n, ok := parseNetwork(fw.GetNetwork())
	if !ok || n != t.network || fw.GetDisabled() || cmp.Or(fw.GetDirection(), "INGRESS") != "INGRESS" {
		return false
	}
	if len(fw.TargetTags) == 0 && len(fw.TargetServiceAccounts) == 0 {
		return true
	}
	for _, tag := range fw.TargetTags {
		if slices.Contains(t.tags, tag) {
			return true
		}
	}
	for _, sa := range fw.TargetServiceAccounts {
		if slices.Contains(t.serviceAccounts, sa) {
			return true
		}
	}
	return false
}

// fromAnywhere reports whether fw's sources hold every IPv4 or every IPv6
// address.
func fromAnywhere(fw *computepb.Firewall) bool {
	for _, s := range fw.SourceRanges {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Bits() == 0 {
			return true
		}
	}
	return false
}

// portIn reports whether port is in a firewall port spec ("22",
// "8000-9000").
func portIn(spec string, port int) bool {
	lo, hi, isRange := strings.Cut(spec, "-")
	l, err := strconv.Atoi(lo)
	if err != nil {
		return false
	}
	h := l
	if isRange {
		if h, err = strconv.Atoi(hi); err != nil {
			return false
		}
	}
	return l <= port && port <= h
}

// covers reports whether fw's allowed or denied entries hold port with
// protocol ("tcp", "udp").
func covers(fw *computepb.Firewall, protocol string, port int) bool {
	for _, e := range entries(fw) {
		if p := strings.ToLower(e.proto); p != "all" && p != protocol && !(protocol == "tcp" && p == "6") && !(protocol == "udp" && p == "17") {
			continue
		}
		if len(e.ports) == 0 {
			return true
		}
		for _, s := range e.ports {
			if portIn(s, port) {
				return true
			}
		}
	}
	return false
}

// overlaps reports whether fw holds some of the locked traffic.
func overlaps(fw *computepb.Firewall, lock []protoEntry) bool {
	for _, e := range lock {
		for _, p := range e.ports {
			port, _ := strconv.Atoi(p)
			if covers(fw, e.proto, port) {
				return true
			}
		}
	}
	return false
}

// byPrecedence orders rules as Google Cloud evaluates them: by priority,
// a deny ahead of an allow at equal priority.
func byPrecedence(a, b *computepb.Firewall) int {
	return cmp.Or(cmp.Compare(a.GetPriority(), b.GetPriority()), cmp.Compare(len(b.Denied), len(a.Denied)), cmp.Compare(a.GetName(), b.GetName()))
}

// exposed returns the management ports that new TCP connections from the
// whole internet reach on the instance through rules, the rules taken by
// precedence, considering only those from anywhere (a narrower allow does
// not expose a port, nor does a narrower deny close it to the internet).
func exposed(rules []*computepb.Firewall, t target) []jit.Socket {
	var applicable []*computepb.Firewall
	for _, fw := range rules {
		if appliesTo(fw, t) && fromAnywhere(fw) {
			applicable = append(applicable, fw)
		}
	}
	slices.SortFunc(applicable, byPrecedence)
	var out []jit.Socket
	for _, port := range ManagementPorts {
		for _, fw := range applicable {
			if covers(fw, "tcp", port) {
				if len(fw.Allowed) > 0 {
					out = append(out, jit.Socket{Protocol: jit.ProtoTCP, Port: port})
				}
				break
			}
		}
	}
	return out
}

func describeLock(r instanceRef) string {
	return fmt.Sprintf("ajar JIT lock of instance %s (managed by ajar; do not edit)", r)
}

func describeGrant(r instanceRef, g jit.GrantRule) string {
	return fmt.Sprintf("ajar JIT grant %s to instance %s until %s (managed by ajar; do not edit)",
		g.ID, r, g.EndTime.UTC().Format("2006-01-02T15:04:05Z"))
}
