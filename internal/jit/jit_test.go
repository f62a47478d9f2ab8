package jit

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestISODuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT3H", 3 * time.Hour, true}, {"PT1H30M", 90 * time.Minute, true}, {"P1D", 24 * time.Hour, true},
		{"PT0.5S", 500 * time.Millisecond, true}, {"pt5m", 5 * time.Minute, true}, {"P1DT2H", 26 * time.Hour, true},
		{"3h", 0, false}, {"PTXH", 0, false}, {"P", 0, false}, {"PT", 0, false}, {"PT-1H", 0, false}, {"P1H", 0, false},
		{"PT1D", 0, false}, {"PT1e3S", 0, false}, {"", 0, false}, {"PT1HT2M", 0, false},
		{"P1W", 7 * 24 * time.Hour, true}, {"PT0000001H", time.Hour, true}, {"PT1.5H", 90 * time.Minute, true},
		{"P400D", 400 * 24 * time.Hour, true}, {"PT0.000000001S", time.Nanosecond, true}, {"PT0S", 0, true},
		// Not numbers, or numbers in forms ISO 8601 does not write.
		{"PTNaNS", 0, false}, {"PTNANH", 0, false}, {"PTInfS", 0, false}, {"PT+1H", 0, false}, {"PT0x10S", 0, false},
		{"PT1_0S", 0, false}, {"PT.5S", 0, false}, {"PT1.S", 0, false}, {"PT1.0000000001S", 0, false}, {"PT 1H", 0, false},
		// Units repeated, out of order, with a fraction before the last.
		{"PT1H1H", 0, false}, {"PT1M1H", 0, false}, {"PT1S0S", 0, false}, {"P1D1W", 0, false}, {"PT1.5H30M", 0, false},
		{"P1DT", 0, false}, {"PT1H2", 0, false}, {"P1M", 0, false},
		// Too long: in value (no wrap-around), in text.
		{"P401D", 0, false}, {"PT9601H", 0, false}, {"PT9223372036854775807S", 0, false}, {"PT99999999999999999999999H", 0, false},
		{"P400DT1S", 0, false}, {"PT1H" + strings.Repeat("0M", 100), 0, false},
		{"PT" + strings.Repeat("0", 2000) + "1H", 0, false},
	} {
		got, err := ParseISODuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseISODuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && tc.want >= time.Second {
			if back, _ := ParseISODuration(FormatISODuration(tc.want)); back != tc.want {
				t.Errorf("round trip of %v via %q = %v", tc.want, FormatISODuration(tc.want), back)
			}
		}
	}
}

func TestValidatePolicy(t *testing.T) {
	ok := PortRule{Number: 22, Protocol: "tcp", AllowedSourceAddressPrefixes: []string{"198.51.100.7/24"}, MaxRequestAccessDuration: "PT1H"}
	p := Policy{Ports: []PortRule{ok}}
	if err := ValidatePolicy(&p); err != nil {
		t.Fatal(err)
	}
	if r := p.Ports[0]; r.Protocol != "TCP" || r.AllowedSourceAddressPrefixes[0] != "198.51.100.0/24" || r.MaxRequestAccessDuration != "PT1H" {
		t.Fatalf("not canonical: %+v", r)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*PortRule)
		target string
	}{
		{"port 0", func(r *PortRule) { r.Number = 0 }, "ports[0].number"},
		{"port 65536", func(r *PortRule) { r.Number = 65536 }, "ports[0].number"},
		{"protocol", func(r *PortRule) { r.Protocol = "ICMP" }, "ports[0].protocol"},
		{"cidr", func(r *PortRule) { r.AllowedSourceAddressPrefixes = []string{"10.0.0.0/33"} }, "ports[0].allowedSourceAddressPrefixes[0]"},
		{"star mixed", func(r *PortRule) { r.AllowedSourceAddressPrefixes = []string{"*", "10.0.0.0/8"} }, "ports[0].allowedSourceAddressPrefixes[0]"},
		{"too short", func(r *PortRule) { r.MaxRequestAccessDuration = "PT4M" }, "ports[0].maxRequestAccessDuration"},
		{"too long", func(r *PortRule) { r.MaxRequestAccessDuration = "PT25H" }, "ports[0].maxRequestAccessDuration"},
		{"not iso", func(r *PortRule) { r.MaxRequestAccessDuration = "3h" }, "ports[0].maxRequestAccessDuration"},
	} {
		r := ok
		r.AllowedSourceAddressPrefixes = []string{"*"}
		tc.mutate(&r)
		p := Policy{Ports: []PortRule{r}}
		if err := ValidatePolicy(&p); ErrorCode(err) != EInvalid || ErrorTarget(err) != tc.target {
			t.Errorf("%s: %v (target %q), want invalid at %s", tc.name, err, ErrorTarget(err), tc.target)
		}
	}
	dup := Policy{Ports: []PortRule{{Number: 22, Protocol: "*"}, {Number: 22, Protocol: "TCP"}}}
	if err := ValidatePolicy(&dup); ErrorTarget(err) != "ports[1]" {
		t.Errorf("overlapping ports: %v", err)
	}
}

func TestPlanGrant(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	vm := VM{ID: "v1", Name: "db-7", Group: "prod"}
	pol := Policy{Ports: []PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"198.51.100.0/24"}, MaxRequestAccessDuration: "PT1H"},
		{Number: 53, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
	}}
	me := Requester{User: "alice", Address: netip.MustParseAddr("198.51.100.7")}
	any := me
	any.AnySource = true
	g, err := PlanGrant(vm, pol, PortRequest{Number: 22}, "p", me, now)
	if err != nil || g.Source != "198.51.100.7/32" || g.Protocol != "TCP" || !g.EndTime.Equal(now.Add(time.Hour)) {
		t.Fatalf("default grant = %+v, %v", g, err)
	}
	g, err = PlanGrant(vm, pol, PortRequest{Number: 53, Protocol: "udp", Duration: "PT2S"}, "p", me, now)
	if err != nil || g.Protocol != "UDP" || !g.EndTime.Equal(now.Add(2*time.Second)) {
		t.Fatalf("udp on a * rule = %+v, %v", g, err)
	}
	for _, tc := range []struct {
		name   string
		pr     PortRequest
		who    Requester
		code   string
		target string
	}{
		{"port not in policy", PortRequest{Number: 23}, me, EInvalid, "p.number"},
		{"protocol mismatch", PortRequest{Number: 22, Protocol: "UDP"}, me, EInvalid, "p.protocol"},
		{"other source without permission", PortRequest{Number: 22, AllowedSourceAddressPrefix: "198.51.100.8"}, me, EForbidden, "p.allowedSourceAddressPrefix"},
		{"source outside prefixes", PortRequest{Number: 22, AllowedSourceAddressPrefix: "203.0.113.5"}, any, EInvalid, "p.allowedSourceAddressPrefix"},
		{"over the maximum", PortRequest{Number: 22, Duration: "PT2H"}, me, EInvalid, "p.duration"},
		{"not positive", PortRequest{Number: 22, Duration: "PT0S"}, me, EInvalid, "p.duration"},
		{"end in the past", PortRequest{Number: 22, EndTimeUTC: "2026-11-27T11:00:00Z"}, me, EInvalid, "p.endTimeUtc"},
		{"both", PortRequest{Number: 22, Duration: "PT1M", EndTimeUTC: "2026-11-27T12:10:00Z"}, me, EInvalid, "p.duration"},
	} {
		if _, err := PlanGrant(vm, pol, tc.pr, "p", tc.who, now); ErrorCode(err) != tc.code || ErrorTarget(err) != tc.target {
			t.Errorf("%s: %v (target %q), want %s at %q", tc.name, err, ErrorTarget(err), tc.code, tc.target)
		}
	}
}

func TestOverlapsOnlyOwnGrants(t *testing.T) {
	a := Grant{User: "alice", VMID: "v", Port: 22, Protocol: "TCP", Source: "198.51.100.7/32"}
	b := a
	b.User = "bob"
	if !a.Overlaps(a) || a.Overlaps(b) {
		t.Fatal("a newer grant must supersede only the same user's grant")
	}
	c := a
	c.Protocol = "*"
	if !c.Overlaps(a) {
		t.Fatal("* overlaps TCP")
	}
}

func TestChainVerifier(t *testing.T) {
	var evs []*Event
	prev := ""
	for i := int64(1); i <= 3; i++ {
		e := &Event{Seq: i, Time: time.Unix(i, 0), Actor: "x", Operation: OpGrantOpen, Outcome: OutcomeSuccess, Details: []byte(`{}`), PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		evs = append(evs, e)
	}
	var ok ChainVerifier
	for _, e := range evs {
		ok.Add(e)
	}
	if ok.BadSeq != 0 || ok.Events != 3 {
		t.Fatalf("intact chain: %+v", ok)
	}
	evs[1].Actor = "mallory"
	var bad ChainVerifier
	for _, e := range evs {
		bad.Add(e)
	}
	if bad.BadSeq != 2 {
		t.Fatalf("edited event 2: bad at %d", bad.BadSeq)
	}
}

func TestCan(t *testing.T) {
	b := []RoleBinding{{Role: RoleRequester, Group: "a"}, {Role: RoleReader, Group: AllGroups}}
	if !Can(b, PermRequest, "a") || Can(b, PermRequest, "b") || !Can(b, PermRead, "b") || Can(b, PermManagePolicy, "a") {
		t.Fatal("role permissions wrong")
	}
}

func chain(n int, actor func(i int64) string) []*Event {
	var evs []*Event
	prev := ""
	for i := int64(1); i <= int64(n); i++ {
		e := &Event{Seq: i, Time: time.Unix(i, 0), Actor: actor(i), Operation: OpGrantOpen, Outcome: OutcomeSuccess, Details: []byte(`{}`), PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		evs = append(evs, e)
	}
	return evs
}

func TestAnchorCatchesTruncationAndRewrites(t *testing.T) {
	orig := chain(3, func(int64) string { return "x" })
	anchor := Anchor{Seq: 3, Hash: orig[2].Hash}
	parsed, err := ParseAnchor(anchor.String())
	if err != nil || parsed != anchor {
		t.Fatalf("ParseAnchor(%s) = %v, %v", anchor, parsed, err)
	}
	verify := func(evs []*Event) ChainVerifier {
		v := ChainVerifier{Anchor: &anchor}
		for _, e := range evs {
			v.Add(e)
		}
		v.Finish()
		return v
	}
	if v := verify(orig); v.BadSeq != 0 || v.Head != anchor {
		t.Fatalf("intact log with its anchor: %+v", v)
	}
	if v := verify(orig[:2]); v.BadSeq != 3 {
		t.Fatalf("log cut before the anchor: bad at %d (%s)", v.BadSeq, v.Problem)
	}
	rewritten := chain(3, func(i int64) string {
		if i == 2 {
			return "mallory"
		}
		return "x"
	})
	if v := verify(rewritten); v.BadSeq != 3 {
		t.Fatalf("log rewritten with fresh hashes: bad at %d (%s)", v.BadSeq, v.Problem)
	}
}

func TestStorableText(t *testing.T) {
	for s, want := range map[string]bool{"": true, "héllo": true, "a\x00b": false, "\xff": false, "ok\u2028": true} {
		if got := Storable(s); got != want {
			t.Errorf("Storable(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		`{"a":"x"}`:         false,
		`{"a":"x\u0000"}`:   true,
		`{"a":"x\\u0000"}`:  false, // an escaped backslash, then text
		`{"a":"x\\\u0000"}`: true,
		`{"a":"u0000"}`:     false,
		`{"a":"\u00001"}`:   true,
		`{"\u0000":1}`:      true,
		`{"a":"\u0001"}`:    false,
	} {
		if got := EscapesNUL([]byte(s)); got != want {
			t.Errorf("EscapesNUL(%s) = %v, want %v", s, got, want)
		}
	}
}
