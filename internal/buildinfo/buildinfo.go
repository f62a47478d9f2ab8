// Package buildinfo tells which version and commit a binary was built from:
// the Go toolchain's build information (the module version and the VCS
// revision it stamps into binaries built in a checkout), overridden by
// values a packager sets at link time:
//
//	go build -ldflags "-X github.com/ajarhq/ajar/internal/buildinfo.version=1.2.0 -X github.com/ajarhq/ajar/internal/buildinfo.commit=abc123" ./cmd/...
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time by packagers (-ldflags -X); empty means "ask the
// toolchain's build information".
var version, commit string

// Info is what a binary knows of its build.
type Info struct {
	Version  string // such as 1.2.0, v0.0.0-20261202...-abcdef, or (devel)
	Commit   string // the VCS revision, "unknown" when not recorded
	Time     string // the commit's time (RFC 3339), when recorded
	Modified bool   // built from a checkout with uncommitted changes
	Go       string // the Go toolchain version
}

// Read returns this binary's build information.
func Read() Info {
	in := Info{Version: "(devel)", Commit: "unknown", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			in.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		in.Version = version
	}
	if commit != "" {
		in.Commit, in.Modified = commit, false
	}
	return in
}

// String is the one line `PROGRAM --version` prints, such as
// "ajard 1.2.0 (commit 0123abcd..., 2026-12-02T13:00:00Z, go1.26.8)".
func (in Info) String(program string) string {
	c := in.Commit
	if in.Modified {
		c += "+modified"
	}
	extra := ""
	if in.Time != "" {
		extra = ", " + in.Time
	}
	return fmt.Sprintf("%s %s (commit %s%s, %s)", program, in.Version, c, extra, in.Go)
}
