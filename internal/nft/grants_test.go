package nft

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sp(lo, hi string, secs int64) span {
	return span{lo: netip.MustParseAddr(lo), hi: netip.MustParseAddr(hi), secs: secs}
}

func fmtSpans(ss []span) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%v-%v@%d", s.lo, s.hi, s.secs)
	}
	return out
}

func TestFlatten(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []span
		want []span
	}{
		{"one", []span{sp("198.51.100.1", "198.51.100.1", 5)}, []span{sp("198.51.100.1", "198.51.100.1", 5)}},
		{"disjoint", []span{sp("198.51.100.9", "198.51.100.9", 5), sp("198.51.100.1", "198.51.100.1", 7)},
			[]span{sp("198.51.100.1", "198.51.100.1", 7), sp("198.51.100.9", "198.51.100.9", 5)}},
		{"duplicate keeps the longest", []span{sp("198.51.100.1", "198.51.100.1", 5), sp("198.51.100.1", "198.51.100.1", 9)},
			[]span{sp("198.51.100.1", "198.51.100.1", 9)}},
		{"nested shorter is absorbed", []span{sp("198.51.100.0", "198.51.100.255", 9), sp("198.51.100.7", "198.51.100.7", 5)},
			[]span{sp("198.51.100.0", "198.51.100.255", 9)}},
		{"nested longer splits", []span{sp("198.51.100.0", "198.51.100.255", 5), sp("198.51.100.7", "198.51.100.7", 9)},
			[]span{sp("198.51.100.0", "198.51.100.6", 5), sp("198.51.100.7", "198.51.100.7", 9), sp("198.51.100.8", "198.51.100.255", 5)}},
		{"nested at the start", []span{sp("198.51.100.0", "198.51.100.255", 5), sp("198.51.100.0", "198.51.100.15", 9)},
			[]span{sp("198.51.100.0", "198.51.100.15", 9), sp("198.51.100.16", "198.51.100.255", 5)}},
		{"adjacent same timeout merge", []span{sp("198.51.100.0", "198.51.100.127", 5), sp("198.51.100.128", "198.51.100.255", 5)},
			[]span{sp("198.51.100.0", "198.51.100.255", 5)}},
		{"three levels", []span{
			sp("198.51.100.0", "198.51.100.255", 1), sp("198.51.100.0", "198.51.100.127", 2), sp("198.51.100.64", "198.51.100.64", 3)},
			[]span{sp("198.51.100.0", "198.51.100.63", 2), sp("198.51.100.64", "198.51.100.64", 3),
				sp("198.51.100.65", "198.51.100.127", 2), sp("198.51.100.128", "198.51.100.255", 1)}},
		{"to the top of the space", []span{sp("0.0.0.0", "255.255.255.255", 1), sp("255.255.255.255", "255.255.255.255", 2)},
			[]span{sp("0.0.0.0", "255.255.255.254", 1), sp("255.255.255.255", "255.255.255.255", 2)}},
		{"ipv6", []span{sp("2001:db8::", "2001:db8::ffff", 1), sp("2001:db8::10", "2001:db8::1f", 4)},
			[]span{sp("2001:db8::", "2001:db8::f", 1), sp("2001:db8::10", "2001:db8::1f", 4), sp("2001:db8::20", "2001:db8::ffff", 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(fmtSpans(tc.want), fmtSpans(flatten(tc.in))); diff != "" {
				t.Errorf("flatten (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7/32":         "198.51.100.7/32",
		"198.51.100.7":            "198.51.100.7/32",
		"198.51.100.7/24":         "198.51.100.0/24",
		" 2001:db8::1 ":           "2001:db8::1/128",
		"2001:db8::1/32":          "2001:db8::/32",
		"::ffff:198.51.100.7/128": "198.51.100.7/32",
		"::ffff:198.51.100.0/120": "198.51.100.0/24",
		"0.0.0.0/0":               "0.0.0.0/0",
		"fe80::1%eth0":            "fe80::1/128",
		"nope":                    "error",
		"198.51.100.7/33":         "error",
		"::ffff:198.51.100.0/64":  "error",
	} {
		got := "error"
		if p, err := parseSource(in); err == nil {
			got = p.String()
		}
		if got != want {
			t.Errorf("parseSource(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.0/24":  "198.51.100.255",
		"198.51.100.16/28": "198.51.100.31",
		"198.51.100.7/32":  "198.51.100.7",
		"0.0.0.0/0":        "255.255.255.255",
		"2001:db8::/32":    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::/122":   "2001:db8::3f",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
