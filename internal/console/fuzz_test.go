package console

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzLocalPath checks that the sign-in form's "next" can only lead to a
// path on this site: never another host, scheme or protocol-relative URL.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/machines", "//evil.example/", "/\\evil.example", "https://evil.example/", "/a?b=c#d", "javascript:alert(1)", "/%2F%2Fevil.example", "/\t/evil.example", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := localPath(p, "/machines")
		if got != p && got != "/machines" {
			t.Fatalf("localPath(%q) = %q, neither the path nor the default", p, got)
		}
		if got == "/machines" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n\t") {
			t.Fatalf("localPath(%q) = %q, which may leave the site", p, got)
		}
	})
}

// FuzzPolicyFormSources checks the policy form's source list parsing: no
// empty entries, no separators inside one, "*" for an empty field.
func FuzzPolicyFormSources(f *testing.F) {
	for _, s := range []string{"", "198.51.100.0/24, 203.0.113.7", "*", " ;\t\n", "2001:db8::/32;198.51.100.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts := splitSources(s)
		if len(parts) == 0 {
			t.Fatalf("splitSources(%q) is empty", s)
		}
		if strings.Trim(s, ", \t\n\r;") == "" {
			if len(parts) != 1 || parts[0] != "*" {
				t.Fatalf("splitSources(%q) = %q, want [*]", s, parts)
			}
			return
		}
		for _, p := range parts {
			if p == "" || strings.ContainsAny(p, ", \t\n\r;") {
				t.Fatalf("splitSources(%q) has entry %q", s, p)
			}
		}
	})
}
