package nft

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/ajarhq/ajar/internal/jit"
)

// Check reports whether table inet ajar in the kernel differs from what
// Apply(st) would write: the table missing (or present when st has no
// lock), disabled, or a chain, rule, set or grant element missing, changed
// or added. st's RemainingSeconds must be current. Grant sets are compared
// by the addresses and ports they cover, timeouts aside, with the slack the
// kernel's whole-second timeouts need: a grant with one second or less
// left may already have lost its element, and a grant listed with
// RemainingSeconds 0 has just ended, so its element is no drift while the
// kernel is about to time it out (within endingSlack).
//
// When the kernel's ruleset generation has not moved since this Firewall
// applied or verified the same state (timeouts aside), nothing can differ
// and Check answers without reading the table (one small netlink request
// instead of a dump of every element). Elements only leave a table on
// their own (timeouts); an ending grant's element that a check let pass
// times out within endingSlack, and nothing can lengthen it without moving
// the generation.
func (f *Firewall) Check(ctx context.Context, st jit.DesiredState) (drift bool, reason string, err error) {
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	gen, gerr := f.generation(ctx)
	fp := fingerprint(st)
	if gerr == nil && f.known && gen == f.knownGen && fp == f.knownFP {
		return false, "", nil
	}
	f.known = false
	defer func() {
		if gerr == nil && err == nil && !drift {
			f.known, f.knownGen, f.knownFP = true, gen, fp
		}
	}()
	c, err := f.conn(ctx, 0)
	if err != nil {
		return false, "", fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, "", fmt.Errorf("list tables: %w", err)
	}
	var got *nftables.Table
	for _, t := range tables {
		if t.Name == TableName {
			got = t
		}
	}
	if len(st.Lock) == 0 {
		if got != nil {
			return true, fmt.Sprintf("table inet %s present though no port is locked", TableName), nil
		}
		return false, "", nil
	}
	if got == nil {
		return true, fmt.Sprintf("table inet %s missing", TableName), nil
	}
	if got.Flags != 0 {
		return true, fmt.Sprintf("table inet %s has flags set (dormant?)", TableName), nil
	}
	want, err := buildPlan(st, 0)
	if err != nil {
		return false, "", err
	}

	if reason, err := checkChains(c, want); err != nil || reason != "" {
		return reason != "", reason, err
	}
	if reason, err := checkSets(c, st, want); err != nil || reason != "" {
		return reason != "", reason, err
	}
	return false, "", nil
}

func checkChains(c *nftables.Conn, want *plan) (string, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("list chains: %w", err)
	}
	got := map[string]*nftables.Chain{}
	var names, wantNames []string
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == TableName {
			got[ch.Name] = ch
			names = append(names, ch.Name)
		}
	}
	for _, pc := range want.chains {
		wantNames = append(wantNames, pc.chain.Name)
	}
	slices.Sort(names)
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		return fmt.Sprintf("chains are [%s], want [%s]", strings.Join(names, " "), strings.Join(wantNames, " ")), nil
	}
	for _, pc := range want.chains {
		ch, w := got[pc.chain.Name], pc.chain
		if ch.Type != w.Type || !eqPtr(ch.Hooknum, w.Hooknum) || !eqPtr(ch.Priority, w.Priority) || !eqPtr(ch.Policy, w.Policy) {
			return fmt.Sprintf("chain %s changed (type, hook, priority or policy)", w.Name), nil
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return "", fmt.Errorf("list rules: %w", err)
		}
		if len(rules) != len(pc.rules) {
			return fmt.Sprintf("chain %s has %d rules, want %d", w.Name, len(rules), len(pc.rules)), nil
		}
		for i, r := range rules {
			if !sameExprs(r.Exprs, pc.rules[i]) {
				return fmt.Sprintf("chain %s rule %d changed", w.Name, i+1), nil
			}
		}
	}
	return "", nil
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// sameExprs compares rule expressions, ignoring the set IDs of lookups,
// which only matter within a batch.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if gl, ok := g.(*expr.Lookup); ok {
			wl, ok := w.(*expr.Lookup)
			if !ok {
				return false
			}
			a, b := *gl, *wl
			a.SetID, b.SetID = 0, 0
			if a != b {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}

func checkSets(c *nftables.Conn, st jit.DesiredState, want *plan) (string, error) {
	sets, err := c.GetSets(table)
	if err != nil {
		return "", fmt.Errorf("list sets: %w", err)
	}
	var names, wantNames []string
	got := map[string]*nftables.Set{}
	for _, s := range sets {
		names = append(names, s.Name)
		got[s.Name] = s
	}
	for _, s := range want.sets {
		wantNames = append(wantNames, s.set.Name)
	}
	slices.Sort(names)
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		return fmt.Sprintf("sets are [%s], want [%s]", strings.Join(names, " "), strings.Join(wantNames, " ")), nil
	}
	// What the grant sets must hold (grants with more than a second left,
	// which no rounding can have timed out yet), may hold (grants with
	// time left) and may still hold for a moment (grants that just ended).
	must, live, ending, err := grantCovers(st.Grants)
	if err != nil {
		return "", err
	}
	for _, w := range want.sets {
		g := got[w.set.Name]
		if g.Interval != w.set.Interval || g.Concatenation != w.set.Concatenation ||
			g.HasTimeout != w.set.HasTimeout || g.IsMap || g.Constant ||
			g.KeyType.GetNFTMagic() != w.set.KeyType.GetNFTMagic() || g.KeyType.Bytes != w.set.KeyType.Bytes {
			return fmt.Sprintf("set %s changed", w.set.Name), nil
		}
		elems, err := c.GetSetElements(g)
		if err != nil {
			return "", fmt.Errorf("list elements of %s: %w", w.set.Name, err)
		}
		k, isGrant := grantSets[w.set.Name]
		if !isGrant {
			if have := elemKeys(elems); !slices.Equal(have, elemKeys(w.elems)) {
				return fmt.Sprintf("set %s has %d elements that differ from the %d wanted", w.set.Name, len(have), len(w.elems)), nil
			}
			continue
		}
		if reason := checkGrantElems(w.set.Name, k.v6, elems, must[k], live[k], ending[k]); reason != "" {
			return reason, nil
		}
	}
	return "", nil
}

// grantSets maps each grant set's name to its family and protocol.
var grantSets = map[string]setKey{
	setGrant4TCP: {false, jit.ProtoTCP}, setGrant4UDP: {false, jit.ProtoUDP},
	setGrant6TCP: {true, jit.ProtoTCP}, setGrant6UDP: {true, jit.ProtoUDP},
}

// endingSlack is how soon the kernel must be about to time out an element
// of a grant that just ended for it not to count as drift. A grant's
// element gets its remaining time rounded to whole seconds, so it can
// outlive the grant by half a second; an ended grant stays in the state
// while its element may still be there, with up to a second to go, plus
// the time an Apply takes to land.
const endingSlack = 1500 * time.Millisecond

// checkGrantElems compares one grant set's elements with the grants, by the
// addresses they cover rather than element by element: how the kernel's
// elements split or merge neighbouring addresses depends on the timeouts
// they had when applied. Every address and port of must must be covered;
// every element must lie within live, or within ending while the kernel is
// about to time it out (a grant that just ended, whose element the kernel
// may keep for up to half a second longer).
func checkGrantElems(name string, v6 bool, elems []nftables.SetElement, must, live, ending cover) string {
	alen := 4
	if v6 {
		alen = 16
	}
	have := cover{}
	for _, e := range elems {
		r, ok := grantRange(e, alen)
		if !ok {
			return fmt.Sprintf("set %s holds an element ajar does not write (%x-%x)", name, e.Key, e.KeyEnd)
		}
		if !live.contains(r) &&
			!(e.Timeout > 0 && e.Expires <= endingSlack && ending.contains(r)) {
			return fmt.Sprintf("set %s holds %s, which no grant allows", name, r)
		}
		have.add(r)
	}
	have.merge()
	for _, rs := range must {
		for _, r := range rs {
			if !have.contains(r) {
				return fmt.Sprintf("set %s lacks %s of a grant", name, r)
			}
		}
	}
	return ""
}

// portRange is the addresses lo to hi on one port.
type portRange struct {
	port   uint16
	lo, hi netip.Addr
}

func (r portRange) String() string {
	if r.lo == r.hi {
		return fmt.Sprintf("%s . %d", r.lo, r.port)
	}
	return fmt.Sprintf("%s-%s . %d", r.lo, r.hi, r.port)
}

// grantRange decodes a grant set element (address . port, as concatKey
// writes it) into the range it covers; ok is false for an element ajar
// would not write, such as one spanning several ports.
func grantRange(e nftables.SetElement, alen int) (r portRange, ok bool) {
	end := e.KeyEnd
	if len(end) == 0 {
		end = e.Key
	}
	if len(e.Key) != alen+4 || len(end) != alen+4 {
		return r, false
	}
	lo, _ := netip.AddrFromSlice(e.Key[:alen])
	hi, _ := netip.AddrFromSlice(end[:alen])
	port := uint16(e.Key[alen])<<8 | uint16(e.Key[alen+1])
	if port != uint16(end[alen])<<8|uint16(end[alen+1]) || hi.Less(lo) {
		return r, false
	}
	return portRange{port: port, lo: lo, hi: hi}, true
}

// cover is the addresses a grant set covers: per port, ranges sorted by
// start and, once merged, disjoint and not adjacent.
type cover map[uint16][]portRange

// grantCovers returns, per grant set, the merged covers of the grants
// with more than a second left (must), with time left (live), and of all
// of them (ending), including those that just ended (RemainingSeconds 0).
func grantCovers(grants []jit.GrantRule) (must, live, ending map[setKey]cover, err error) {
	must, live, ending = map[setKey]cover{}, map[setKey]cover{}, map[setKey]cover{}
	add := func(m map[setKey]cover, k setKey, r portRange) {
		if m[k] == nil {
			m[k] = cover{}
		}
		m[k].add(r)
	}
	for i, g := range grants {
		if g.RemainingSeconds < 0 {
			continue
		}
		if g.Port < 1 || g.Port > 65535 {
			return nil, nil, nil, jit.Invalid(fmt.Sprintf("grants[%d].port", i), "port %d out of range", g.Port)
		}
		p, err := parseSource(g.Source)
		if err != nil {
			return nil, nil, nil, jit.Invalid(fmt.Sprintf("grants[%d].source", i), "%v", err)
		}
		protos, err := protocols(g.Protocol)
		if err != nil {
			return nil, nil, nil, jit.Invalid(fmt.Sprintf("grants[%d].protocol", i), "%v", err)
		}
		r := portRange{port: uint16(g.Port), lo: p.Addr(), hi: lastAddr(p)}
		for _, proto := range protos {
			k := setKey{v6: p.Addr().Is6(), proto: proto}
			add(ending, k, r)
			if g.RemainingSeconds > 0 {
				add(live, k, r)
			}
			if g.RemainingSeconds > 1 {
				add(must, k, r)
			}
		}
	}
	for _, m := range []map[setKey]cover{must, live, ending} {
		for _, c := range m {
			c.merge()
		}
	}
	return must, live, ending, nil
}

func (c cover) add(r portRange) { c[r.port] = append(c[r.port], r) }

// merge sorts each port's ranges and joins those that overlap or touch.
func (c cover) merge() {
	for port, rs := range c {
		slices.SortFunc(rs, func(a, b portRange) int { return a.lo.Compare(b.lo) })
		out := rs[:0]
		for _, r := range rs {
			if n := len(out); n > 0 && (!out[n-1].hi.Next().IsValid() || !out[n-1].hi.Next().Less(r.lo)) {
				if out[n-1].hi.Less(r.hi) {
					out[n-1].hi = r.hi
				}
				continue
			}
			out = append(out, r)
		}
		c[port] = out
	}
}

// contains reports whether r lies within one range of the merged cover c.
func (c cover) contains(r portRange) bool {
	rs := c[r.port]
	i, _ := slices.BinarySearchFunc(rs, r.lo, func(x portRange, lo netip.Addr) int {
		return x.hi.Compare(lo)
	})
	return i < len(rs) && !r.lo.Less(rs[i].lo) && !rs[i].hi.Less(r.hi)
}

// elemKeys returns the sorted (key, key end) pairs of elems.
func elemKeys(elems []nftables.SetElement) []string {
	keys := make([]string, len(elems))
	for i, e := range elems {
		keys[i] = string(e.Key) + "|" + string(e.KeyEnd)
	}
	slices.Sort(keys)
	return keys
}
