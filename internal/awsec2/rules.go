package awsec2

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajarhq/ajar/internal/jit"
)

// rule is one ingress rule with one CIDR source: a protocol ("tcp",
// "udp", "-1" for all, or another), a port range (-1 when all protocols)
// and a description.
type rule struct {
	proto    string
	from, to int32
	cidr     string
	desc     string
}

// key identifies a rule in EC2 (the description is not part of it).
func (r rule) key() string { return fmt.Sprintf("%s %d %d %s", r.proto, r.from, r.to, r.cidr) }

func (r rule) String() string {
	if r.proto == "-1" {
		return "all traffic from " + r.cidr
	}
	if r.from == r.to {
		return fmt.Sprintf("%s %d from %s", r.proto, r.from, r.cidr)
	}
	return fmt.Sprintf("%s %d-%d from %s", r.proto, r.from, r.to, r.cidr)
}

// perm returns the rule as an IpPermission.
func (r rule) perm() types.IpPermission {
	p := types.IpPermission{IpProtocol: aws.String(r.proto)}
	if r.proto != "-1" {
		p.FromPort, p.ToPort = aws.Int32(r.from), aws.Int32(r.to)
	}
	var desc *string
	if r.desc != "" {
		desc = aws.String(r.desc)
	}
	if strings.Contains(r.cidr, ":") {
		p.Ipv6Ranges = []types.Ipv6Range{{CidrIpv6: aws.String(r.cidr), Description: desc}}
	} else {
		p.IpRanges = []types.IpRange{{CidrIp: aws.String(r.cidr), Description: desc}}
	}
	return p
}

func normProto(p string) string {
	switch strings.ToLower(p) {
	case "6":
		return "tcp"
	case "17":
		return "udp"
	}
	return strings.ToLower(p)
}

// flatten returns the CIDR rules of perms, one per source, and the other
// sources (security groups, prefix lists) as text.
func flatten(perms []types.IpPermission) (rules []rule, others []string) {
	for _, p := range perms {
		r := rule{proto: normProto(aws.ToString(p.IpProtocol)), from: aws.ToInt32(p.FromPort), to: aws.ToInt32(p.ToPort)}
		if r.proto == "-1" {
			r.from, r.to = -1, -1
		}
		for _, ip := range p.IpRanges {
			x := r
			x.cidr, x.desc = aws.ToString(ip.CidrIp), aws.ToString(ip.Description)
			rules = append(rules, x)
		}
		for _, ip := range p.Ipv6Ranges {
			x := r
			x.cidr, x.desc = aws.ToString(ip.CidrIpv6), aws.ToString(ip.Description)
			rules = append(rules, x)
		}
		for _, g := range p.UserIdGroupPairs {
			x := r
			x.cidr = aws.ToString(g.GroupId)
			others = append(others, x.String())
		}
		for _, pl := range p.PrefixListIds {
			x := r
			x.cidr = aws.ToString(pl.PrefixListId)
			others = append(others, x.String())
		}
	}
	return rules, others
}

// fromInternet reports whether the rule's source is every address of
// its family.
func (r rule) fromInternet() bool { return r.cidr == "0.0.0.0/0" || r.cidr == "::/0" }

// allows reports whether the rule lets proto (jit.ProtoTCP, ProtoUDP) to port.
func (r rule) allows(proto string, port int) bool {
	if r.proto == "-1" {
		return true
	}
	return r.proto == strings.ToLower(proto) && int32(port) >= r.from && int32(port) <= r.to
}

// protos are the protocols a lock or grant protocol stands for.
func protos(p string) []string {
	if p == jit.ProtoAny {
		return []string{jit.ProtoTCP, jit.ProtoUDP}
	}
	return []string{p}
}

// overlaps reports whether the rule lets in anything lock closes.
func (r rule) overlaps(lock []jit.PortLock) bool {
	for _, l := range lock {
		for _, p := range protos(l.Protocol) {
			if r.allows(p, l.Port) {
				return true
			}
		}
	}
	return false
}

// within reports whether everything the rule lets in is closed by lock:
// a TCP or UDP rule whose every port lock holds.
func (r rule) within(lock []jit.PortLock) bool {
	if r.proto != "tcp" && r.proto != "udp" {
		return false
	}
	for port := r.from; port <= r.to; port++ {
		held := false
		for _, l := range lock {
			if l.Port == int(port) && (l.Protocol == jit.ProtoAny || strings.EqualFold(l.Protocol, r.proto)) {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	return true
}

// permCovers reports whether p lets proto to port.
func permCovers(p types.IpPermission, proto string, port int) bool {
	r := rule{proto: normProto(aws.ToString(p.IpProtocol)), from: aws.ToInt32(p.FromPort), to: aws.ToInt32(p.ToPort)}
	return r.allows(proto, port)
}

// internetRanges returns the sources of p that are 0.0.0.0/0 or ::/0.
func internetRanges(p types.IpPermission) []string {
	var out []string
	for _, ip := range p.IpRanges {
		if aws.ToString(ip.CidrIp) == "0.0.0.0/0" {
			out = append(out, "0.0.0.0/0")
		}
	}
	for _, ip := range p.Ipv6Ranges {
		if aws.ToString(ip.CidrIpv6) == "::/0" {
			out = append(out, "::/0")
		}
	}
	return out
}

// grantRules returns the ingress rules of ajar's security group for the
// grants: one per grant, protocol (TCP and UDP for *) and source.
func grantRules(grants []jit.GrantRule) ([]rule, error) {
	var out []rule
	seen := map[string]bool{}
	for _, g := range grants {
		var srcs []netip.Prefix
		if g.Source == "*" || strings.EqualFold(g.Source, "any") {
			srcs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
		} else {
			p, err := jit.ParsePrefix(g.Source)
			if err != nil {
				return nil, jit.Invalid("source", "grant %s: %v", g.ID, err)
			}
			srcs = []netip.Prefix{p}
		}
		for _, src := range srcs {
			for _, p := range protos(g.Protocol) {
				r := rule{proto: strings.ToLower(p), from: int32(g.Port), to: int32(g.Port), cidr: src.String(), desc: "ajar grant " + g.ID}
				if !seen[r.key()] {
					seen[r.key()] = true
					out = append(out, r)
				}
			}
		}
	}
	return out, nil
}

// formatLock writes a lock as the TagLock value: "TCP:22,*:3389".
func formatLock(lock []jit.PortLock) string {
	var parts []string
	for _, l := range lock {
		parts = append(parts, l.Protocol+":"+strconv.Itoa(l.Port))
	}
	return strings.Join(parts, ",")
}

func parseLock(s string) []jit.PortLock {
	var out []jit.PortLock
	for _, part := range strings.Split(s, ",") {
		proto, port, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(port)
		if ok && err == nil {
			out = append(out, jit.PortLock{Protocol: proto, Port: n})
		}
	}
	return out
}

// Tags ajar writes. On the security group ajar owns for an instance:
// TagManaged, TagInstance and TagLock. On a security group of someone
// else whose rules ajar revoked (--aws-revoke-shadowing): TagRevokedFor
// and, per rule, TagRevoked+<hash> holding "PROTO FROM TO CIDR" and
// TagRevoked+<hash>+":description" holding its description, if any.
const (
	TagManaged    = "ajar:managed"
	TagInstance   = "ajar:instance"
	TagLock       = "ajar:lock"
	TagRevokedFor = "ajar:revoked-for"
	TagRevoked    = "ajar:revoked:"
)

// recordKey is the tag key recording r.
func recordKey(r rule) string {
	sum := sha256.Sum256([]byte(r.key()))
	return TagRevoked + hex.EncodeToString(sum[:4])
}

// records reads the revoked rules recorded in tags.
func records(tags []types.Tag) []rule {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	var out []rule
	for k, v := range m {
		if !strings.HasPrefix(k, TagRevoked) || strings.HasSuffix(k, ":description") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 4 {
			continue
		}
		from, e1 := strconv.Atoi(f[1])
		to, e2 := strconv.Atoi(f[2])
		if e1 != nil || e2 != nil {
			continue
		}
		out = append(out, rule{proto: f[0], from: int32(from), to: int32(to), cidr: f[3], desc: m[k+":description"]})
	}
	return out
}
