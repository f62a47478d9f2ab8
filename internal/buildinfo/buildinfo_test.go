package buildinfo

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "1.2.0", Commit: "0123abcd", Time: "2026-12-02T13:00:00Z", Go: "go1.26.8"}, "ajard 1.2.0 (commit 0123abcd, 2026-12-02T13:00:00Z, go1.26.8)"},
		{Info{Version: "(devel)", Commit: "0123abcd", Modified: true, Go: "go1.26.8"}, "ajard (devel) (commit 0123abcd+modified, go1.26.8)"},
	} {
		if got := tc.in.String("ajard"); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// Values set at link time win over the toolchain's.
func TestLinkTimeValues(t *testing.T) {
	version, commit = "9.9.9", "feedface"
	defer func() { version, commit = "", "" }()
	in := Read()
	if in.Version != "9.9.9" || in.Commit != "feedface" || in.Modified || !strings.HasPrefix(in.Go, "go") {
		t.Errorf("Read() = %+v", in)
	}
}
