package nft

import (
	"cmp"
	"container/heap"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
)

// span is a range of source addresses [lo, hi] of one family, open on one
// port for secs seconds.
type span struct {
	lo, hi netip.Addr
	secs   int64
}

// maxSecs caps an element's timeout (ten years): far below what the kernel
// and time.Duration can hold, far above any real grant.
const maxSecs = 10 * 365 * 24 * 3600

// setKey names one grant set: family and transport protocol.
type setKey struct {
	v6    bool
	proto string // jit.ProtoTCP or jit.ProtoUDP
}

// portSpans is the content of one grant set: per port, disjoint spans.
type portSpans map[uint16][]span

// parseSource parses a grant source: a CIDR prefix, or a bare address taken
// as a single-address prefix. The prefix is masked to its network.
func parseSource(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr()))
		if !p.IsValid() {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR prefix or address: %q", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapBits is how many prefix bits an IPv4-mapped IPv6 address loses when
// unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// protocols expands a protocol of a lock or grant to TCP and/or UDP.
func protocols(p string) ([]string, error) {
	switch strings.ToUpper(p) {
	case jit.ProtoTCP:
		return []string{jit.ProtoTCP}, nil
	case jit.ProtoUDP:
		return []string{jit.ProtoUDP}, nil
	case jit.ProtoAny:
		return []string{jit.ProtoTCP, jit.ProtoUDP}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", p)
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= bits {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// groupGrants sorts grants with time left (more than minSecs seconds) into
// grant sets, flattening overlapping prefixes: the kernel refuses
// overlapping intervals, so each address gets the longest timeout of the
// grants covering it.
func groupGrants(grants []jit.GrantRule, minSecs int64) (map[setKey]portSpans, error) {
	raw := map[setKey]map[uint16][]span{}
	for i, g := range grants {
		if g.RemainingSeconds <= minSecs {
			continue
		}
		if g.Port < 1 || g.Port > 65535 {
			return nil, jit.Invalid(fmt.Sprintf("grants[%d].port", i), "port %d out of range", g.Port)
		}
		protos, err := protocols(g.Protocol)
		if err != nil {
			return nil, jit.Invalid(fmt.Sprintf("grants[%d].protocol", i), "%v", err)
		}
		p, err := parseSource(g.Source)
		if err != nil {
			return nil, jit.Invalid(fmt.Sprintf("grants[%d].source", i), "%v", err)
		}
		for _, proto := range protos {
			k := setKey{v6: p.Addr().Is6(), proto: proto}
			if raw[k] == nil {
				raw[k] = map[uint16][]span{}
			}
			port := uint16(g.Port)
			raw[k][port] = append(raw[k][port], span{lo: p.Addr(), hi: lastAddr(p), secs: min(g.RemainingSeconds, maxSecs)})
		}
	}
	out := make(map[setKey]portSpans, len(raw))
	for k, ports := range raw {
		out[k] = make(portSpans, len(ports))
		for port, spans := range ports {
			out[k][port] = flatten(spans)
		}
	}
	return out, nil
}

// flatten turns possibly overlapping spans into disjoint ones, each address
// keeping the longest timeout of the spans that cover it; neighbours with the
// same timeout are merged.
func flatten(in []span) []span {
	if len(in) == 1 {
		return in
	}
	spans := slices.Clone(in)
	slices.SortFunc(spans, func(a, b span) int { return a.lo.Compare(b.lo) })
	cuts := make([]netip.Addr, 0, 2*len(spans))
	for _, s := range spans {
		cuts = append(cuts, s.lo)
		if n := s.hi.Next(); n.IsValid() {
			cuts = append(cuts, n)
		}
	}
	slices.SortFunc(cuts, netip.Addr.Compare)
	cuts = slices.Compact(cuts)

	var out []span
	var active spanHeap
	next := 0
	for i, c := range cuts {
		for next < len(spans) && spans[next].lo == c {
			heap.Push(&active, spans[next])
			next++
		}
		for active.Len() > 0 && active[0].hi.Less(c) {
			heap.Pop(&active)
		}
		if active.Len() == 0 {
			continue
		}
		secs := active[0].secs
		var end netip.Addr
		if i+1 < len(cuts) {
			end = cuts[i+1].Prev()
		} else {
			end = maxEnd(active)
		}
		if n := len(out); n > 0 && out[n-1].secs == secs && out[n-1].hi.Next() == c {
			out[n-1].hi = end
			continue
		}
		out = append(out, span{lo: c, hi: end, secs: secs})
	}
	return out
}

// maxEnd is the highest end among the active spans.
func maxEnd(h spanHeap) netip.Addr {
	end := h[0].hi
	for _, s := range h[1:] {
		if end.Less(s.hi) {
			end = s.hi
		}
	}
	return end
}

// spanHeap is a max-heap of spans by timeout.
type spanHeap []span

func (h spanHeap) Len() int           { return len(h) }
func (h spanHeap) Less(i, j int) bool { return h[i].secs > h[j].secs }
func (h spanHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *spanHeap) Push(x any)        { *h = append(*h, x.(span)) }
func (h *spanHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sortedPorts returns the ports of ps in ascending order.
func sortedPorts(ps portSpans) []uint16 {
	ports := make([]uint16, 0, len(ps))
	for p := range ps {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, cmp.Compare)
	return ports
}
