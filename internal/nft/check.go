package nft

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/ajarhq/ajar/internal/jit"
)

// Check reports whether table inet ajar in the kernel differs from what
// Apply(st) would write: the table missing (or present when st has no
// lock), disabled, or a chain, rule, set or grant element missing, changed
// or added. Element timeouts are not compared. st's RemainingSeconds must
// be current; a grant element with one second or less left may already be
// gone without counting as drift.
//
// When the kernel's ruleset generation has not moved since this Firewall
// applied or verified the same state (timeouts aside), nothing can differ and Check answers
// without reading the table (one small netlink request instead of a dump
// of every element).
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
	// Elements a grant about to expire may already have lost.
	lenient, err := buildPlan(st, 1)
	if err != nil {
		return "", err
	}
	for i, w := range want.sets {
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
		have := elemKeys(elems)
		if !slices.Equal(have, elemKeys(w.elems)) && !slices.Equal(have, elemKeys(lenient.sets[i].elems)) {
			return fmt.Sprintf("set %s has %d elements that differ from the %d wanted", w.set.Name, len(have), len(w.elems)), nil
		}
	}
	return "", nil
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
