// Command package builds ajar's Linux packages, .deb and .rpm, for ajard
// (with the ajar CLI) and for ajar-agent, with nFPM as a library:
//
//	go run ./scripts/package                     # into dist/, version from git
//	go run ./scripts/package -version 1.2.0 -arch arm64 -out /tmp/pkgs
//
// The binaries are static (CGO_ENABLED=0) and stamped with the version and
// commit (ajard --version). Shell completions and man pages are generated
// from the commands. This tool is the only user of nFPM: the binaries it
// packages do not link it.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.out, "out", "dist", "folder for the packages")
	fs.StringVar(&o.version, "version", "", "package version, such as 1.2.0 (default 0.0.0~git<commit time>.<commit>)")
	fs.StringVar(&o.arch, "arch", "amd64", "GOARCH to build for: amd64, arm64, ...")
	fs.StringVar(&o.formats, "formats", "deb,rpm", "package formats, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	o.root = root
	paths, err := build(ctx, o)
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// options say what to build.
type options struct {
	root    string // the repository
	out     string
	version string
	commit  string    // default: git's HEAD
	time    time.Time // of every file: the commit's (reproducible builds)
	arch    string
	formats string
}

// build builds the binaries, the completions and man pages, and the
// packages, and returns the packages' paths.
func build(ctx context.Context, o options) ([]string, error) {
	if o.commit == "" {
		c, err := git(ctx, o.root, "rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		o.commit = c
	}
	unix, err := git(ctx, o.root, "log", "-1", "--format=%ct", o.commit)
	if err != nil {
		return nil, err
	}
	secs, err := strconv.ParseInt(unix, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("commit time %q: %w", unix, err)
	}
	o.time = time.Unix(secs, 0).UTC()
	if o.version == "" {
		o.version = "0.0.0~git" + o.time.Format("20060102150405") + "." + o.commit[:12]
	}
	work, err := os.MkdirTemp("", "ajar-package-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}

	ldflags := fmt.Sprintf("-s -w -X github.com/ajarhq/ajar/internal/buildinfo.version=%s -X github.com/ajarhq/ajar/internal/buildinfo.commit=%s", o.version, o.commit)
	for _, name := range []string{"ajard", "ajar", "ajar-agent"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(work, "bin", name), "./cmd/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
		if err := runIn(cmd, o.root); err != nil {
			return nil, err
		}
	}

	// Completions and man pages, from the commands themselves (built for
	// this machine, with the generators' build tag).
	gen := filepath.Join(work, "gen")
	for _, name := range []string{"ajar", "ajard"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "manpages", "-o", filepath.Join(gen, name), "./cmd/"+name)
		if err := runIn(cmd, o.root); err != nil {
			return nil, err
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if err := runTo(ctx, filepath.Join(work, "completion", shell), filepath.Join(gen, "ajar"), "completion", shell); err != nil {
			return nil, err
		}
	}
	man := filepath.Join(work, "man")
	if err := os.MkdirAll(man, 0o755); err != nil {
		return nil, err
	}
	if err := runIn(exec.CommandContext(ctx, filepath.Join(gen, "ajar"), "gen-man", man), o.root); err != nil {
		return nil, err
	}
	if err := runTo(ctx, filepath.Join(man, "ajard.8"), filepath.Join(gen, "ajard"), "man"); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(o.root, "deploy", "ajar-agent.8"), filepath.Join(man, "ajar-agent.8")); err != nil {
		return nil, err
	}
	if err := gzipAll(man); err != nil {
		return nil, err
	}
	docs := filepath.Join(work, "doc")
	if err := writeDocs(docs, o); err != nil {
		return nil, err
	}

	var out []string
	for _, pkg := range []*nfpm.Info{serverPackage(o, work), agentPackage(o, work)} {
		for _, format := range strings.Split(o.formats, ",") {
			p, err := writePackage(pkg, format, o.out)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", pkg.Name, format, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

const (
	maintainer = "ajar maintainers <ajar@ajarhq.github.io>"
	homepage   = "https://github.com/ajarhq/ajar"
	vendor     = "ajar"
)

// serverPackage is ajard and the ajar CLI: the service, its user (created
// by the postinstall script), its config in /etc/ajar and data in
// /var/lib/ajar.
func serverPackage(o options, work string) *nfpm.Info {
	c := files.Contents{
		{Source: filepath.Join(o.root, "deploy", "ajard.toml"), Destination: "/etc/ajar/ajard.toml", Type: files.TypeConfigNoReplace, FileInfo: mode(0o640)},
		{Destination: "/etc/ajar", Type: files.TypeDir, FileInfo: mode(0o750)},
		{Destination: "/var/lib/ajar", Type: files.TypeDir, FileInfo: mode(0o750)},
		{Source: filepath.Join(work, "completion", "bash"), Destination: "/usr/share/bash-completion/completions/ajar", FileInfo: mode(0o644)},
		{Source: filepath.Join(work, "completion", "zsh"), Destination: "/usr/share/zsh/vendor-completions/_ajar", FileInfo: mode(0o644)},
		{Source: filepath.Join(work, "completion", "fish"), Destination: "/usr/share/fish/vendor_completions.d/ajar.fish", FileInfo: mode(0o644)},
	}
	for _, b := range binaries["ajard"] {
		c = append(c, bin(work, b))
	}
	c = append(c, unit(o, "ajard.service")...)
	c = append(c, manPages(work, "ajar-agent.8.gz")...)
	c = append(c, docFiles(work, "ajard")...)
	return info(o, "ajard", "just-in-time VM access server (ajard) and CLI (ajar)",
		`ajard keeps management ports (SSH, RDP, WinRM, ...) closed and opens
them for one address and a bounded time when a policy allows a request;
every step lands in a hash-chained activity log. This package holds the
server, run as the systemd service ajard under its own user, and the ajar
command-line client.`,
		c, "ajard")
}

// agentPackage is ajar-agent and its unit, enabled but started only once
// the host is enrolled.
func agentPackage(o options, work string) *nfpm.Info {
	c := files.Contents{
		{Destination: "/var/lib/ajar-agent", Type: files.TypeDir, FileInfo: mode(0o700)},
	}
	c = append(c, bin(work, "ajar-agent"))
	c = append(c, unit(o, "ajar-agent.service")...)
	c = append(c, &files.Content{Source: filepath.Join(work, "man", "ajar-agent.8.gz"), Destination: "/usr/share/man/man8/ajar-agent.8.gz", FileInfo: mode(0o644)})
	c = append(c, docFiles(work, "ajar-agent")...)
	return info(o, "ajar-agent", "just-in-time VM access agent for nftables hosts",
		`ajar-agent enforces ajar's just-in-time access on a Linux host: it keeps the
ports of the host's JIT policy closed with nftables and opens them for the
addresses and times ajard grants, each with a kernel timeout. Its systemd
unit is enabled on install but starts, and locks ports, only once the host
is enrolled with "ajar-agent enroll".`,
		c, "ajar-agent")
}

func info(o options, name, summary, long string, c files.Contents, scripts string) *nfpm.Info {
	script := func(s string) string { return filepath.Join(o.root, "deploy", "scripts", scripts+"-"+s+".sh") }
	return nfpm.WithDefaults(&nfpm.Info{
		Name:          name,
		Arch:          o.arch,
		Platform:      "linux",
		Version:       o.version,
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description:   summary + "\n" + long,
		Vendor:        vendor,
		Homepage:      homepage,
		License:       "see /usr/share/doc/" + name + "/copyright",
		MTime:         o.time,
		Overridables: nfpm.Overridables{
			Contents: c,
			Scripts:  nfpm.Scripts{PostInstall: script("postinstall"), PreRemove: script("preremove")},
			RPM:      nfpm.RPM{Summary: summary, Group: "System Environment/Daemons"},
		},
	})
}

func bin(work, name string) *files.Content {
	return &files.Content{Source: filepath.Join(work, "bin", name), Destination: "/usr/bin/" + name, FileInfo: mode(0o755)}
}

// unit installs a systemd unit where each family looks for packaged ones.
func unit(o options, name string) files.Contents {
	src := filepath.Join(o.root, "deploy", name)
	return files.Contents{
		{Source: src, Destination: "/lib/systemd/system/" + name, Packager: "deb", FileInfo: mode(0o644)},
		{Source: src, Destination: "/usr/lib/systemd/system/" + name, Packager: "rpm", FileInfo: mode(0o644)},
	}
}

// manPages returns the generated man pages but those named in except.
func manPages(work string, except ...string) files.Contents {
	entries, _ := os.ReadDir(filepath.Join(work, "man"))
	var c files.Contents
	for _, e := range entries {
		skip := false
		for _, x := range except {
			skip = skip || e.Name() == x
		}
		if skip {
			continue
		}
		section := strings.TrimSuffix(e.Name(), ".gz")
		section = section[strings.LastIndex(section, ".")+1:]
		c = append(c, &files.Content{Source: filepath.Join(work, "man", e.Name()), Destination: "/usr/share/man/man" + section + "/" + e.Name(), FileInfo: mode(0o644)})
	}
	return c
}

// binaries are the programs of each package.
var binaries = map[string][]string{"ajard": {"ajard", "ajar"}, "ajar-agent": {"ajar-agent"}}

func docFiles(work, pkg string) files.Contents {
	return files.Contents{
		{Source: filepath.Join(work, "doc", pkg+".lintian-overrides"), Destination: "/usr/share/lintian/overrides/" + pkg, Packager: "deb", FileInfo: mode(0o644)},
		{Source: filepath.Join(work, "doc", "copyright"), Destination: "/usr/share/doc/" + pkg + "/copyright", FileInfo: mode(0o644)},
		{Source: filepath.Join(work, "doc", pkg+".changelog.gz"), Destination: "/usr/share/doc/" + pkg + "/changelog.gz", Packager: "deb", FileInfo: mode(0o644)},
	}
}

func mode(m os.FileMode) *files.ContentFileInfo {
	return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: m}
}

// writeDocs writes the copyright file and each package's changelog.
func writeDocs(dir string, o options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	copyright := `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ajar
Source: https://github.com/ajarhq/ajar

Files: *
Copyright: %d the ajar authors
License: see-upstream
 The terms are those of the source repository, https://github.com/ajarhq/ajar.
`
	if err := os.WriteFile(filepath.Join(dir, "copyright"), fmt.Appendf(nil, copyright, o.time.Year()), 0o644); err != nil {
		return err
	}
	for _, pkg := range []string{"ajard", "ajar-agent"} {
		text := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from ajar commit %.12s; see the repository.\n\n -- %s  %s\n",
			pkg, o.version, o.commit, maintainer, o.time.Format(time.RFC1123Z))
		if err := writeGzip(filepath.Join(dir, pkg+".changelog.gz"), []byte(text)); err != nil {
			return err
		}
		// Go binaries are static by design (CGO_ENABLED=0): nothing to
		// link against, nothing to rebuild when a library changes.
		var ov strings.Builder
		for _, b := range binaries[pkg] {
			fmt.Fprintf(&ov, "%s: statically-linked-binary [usr/bin/%s]\n", pkg, b)
		}
		if err := os.WriteFile(filepath.Join(dir, pkg+".lintian-overrides"), []byte(ov.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writePackage writes one package of info in format into dir.
func writePackage(info *nfpm.Info, format, dir string) (string, error) {
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	in := *info
	in.Target = ""
	if err := nfpm.PrepareForPackager(&in, format); err != nil {
		return "", err
	}
	path := filepath.Join(dir, pkgr.ConventionalFileName(&in))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(&in, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	return path, f.Close()
}

func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w (run from the ajar repository)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// runIn runs cmd in dir, its output in the error when it fails.
func runIn(cmd *exec.Cmd, dir string) error {
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return nil
}

// runTo runs a program and writes its standard output to path.
func runTo(ctx context.Context, path string, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, errb.String())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// gzipAll compresses every file of dir, as man pages are shipped.
func gzipAll(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := writeGzip(p+".gz", b); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// writeGzip writes b compressed at the best level, with no name or time
// in the header (reproducible, as gzip -9n).
func writeGzip(path string, b []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
