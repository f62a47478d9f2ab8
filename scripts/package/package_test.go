package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPackages builds the packages and checks them with Debian's tools:
// dpkg-deb's view of their metadata and contents, lintian (when
// installed), and a real install into a throwaway root with dpkg --root,
// running the maintainer scripts there (DPKG_ROOT): the service user, the
// owners and modes, the enabled units, systemd-analyze verify and security
// on the installed units, the binaries' --version; then a purge.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the three binaries for packaging (about a minute)")
	}
	for _, tool := range []string{"dpkg-deb", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s here", tool)
		}
	}
	ctx := t.Context()
	root, err := repoRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const version = "1.2.3~test"
	out := t.TempDir()
	paths, err := build(ctx, options{root: root, out: out, version: version, arch: "amd64", formats: "deb,rpm"})
	if err != nil {
		t.Fatal(err)
	}
	commit, err := git(ctx, root, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, p := range paths {
		byName[filepath.Base(p)] = p
	}
	serverDeb, agentDeb := byName["ajard_"+version+"_amd64.deb"], byName["ajar-agent_"+version+"_amd64.deb"]
	serverRPM, agentRPM := byName["ajard-"+version+"-1.x86_64.rpm"], byName["ajar-agent-"+version+"-1.x86_64.rpm"]
	if serverDeb == "" || agentDeb == "" || serverRPM == "" || agentRPM == "" {
		t.Fatalf("built %v", paths)
	}

	// lintian takes its time: it runs while the rest is checked.
	lintianDone := make(chan string, 1)
	if _, err := exec.LookPath("lintian"); err == nil {
		go func() {
			b, _ := exec.CommandContext(ctx, "lintian", "--tag-display-limit", "0", serverDeb, agentDeb).CombinedOutput()
			lintianDone <- string(b)
		}()
	} else {
		t.Log("no lintian here (scripts/test.sh installs it)")
		close(lintianDone)
	}

	t.Run("dpkg-deb", func(t *testing.T) {
		info := cmdOut(t, "dpkg-deb", "--info", serverDeb)
		for _, want := range []string{"Package: ajard\n", "Version: " + version + "\n", "Architecture: amd64\n", " postinst ", " prerm ", " conffiles "} {
			if !strings.Contains(info, want) {
				t.Errorf("dpkg-deb --info: no %q in\n%s", want, info)
			}
		}
		contents := cmdOut(t, "dpkg-deb", "--contents", serverDeb)
		for _, want := range []string{
			"-rwxr-xr-x root/root .* ./usr/bin/ajard$",
			"-rwxr-xr-x root/root .* ./usr/bin/ajar$",
			"drwxr-x--- root/root .* ./etc/ajar/$",
			"-rw-r----- root/root .* ./etc/ajar/ajard.toml$",
			"drwxr-x--- root/root .* ./var/lib/ajar/$",
			"-rw-r--r-- root/root .* ./lib/systemd/system/ajard.service$",
			"-rw-r--r-- root/root .* ./usr/share/man/man1/ajar-jit-enable.1.gz$",
			"-rw-r--r-- root/root .* ./usr/share/man/man8/ajard.8.gz$",
			"-rw-r--r-- root/root .* ./usr/share/bash-completion/completions/ajar$",
			"-rw-r--r-- root/root .* ./usr/share/zsh/vendor-completions/_ajar$",
			"-rw-r--r-- root/root .* ./usr/share/fish/vendor_completions.d/ajar.fish$",
		} {
			if !regexp.MustCompile("(?m)" + want).MatchString(contents) {
				t.Errorf("dpkg-deb --contents ajard: nothing matches %q", want)
			}
		}
		agent := cmdOut(t, "dpkg-deb", "--contents", agentDeb)
		for _, want := range []string{"-rwxr-xr-x root/root .* ./usr/bin/ajar-agent$", "drwx------ root/root .* ./var/lib/ajar-agent/$", "./lib/systemd/system/ajar-agent.service$", "./usr/share/man/man8/ajar-agent.8.gz$"} {
			if !regexp.MustCompile("(?m)" + want).MatchString(agent) {
				t.Errorf("dpkg-deb --contents ajar-agent: nothing matches %q", want)
			}
		}
		if strings.Contains(agent, "ajard") {
			t.Errorf("the agent's package holds ajard's files:\n%s", agent)
		}
		if conf := cmdOut(t, "dpkg-deb", "--field", serverDeb, "Depends"); strings.TrimSpace(conf) != "" {
			t.Errorf("ajard depends on %q; static binaries need nothing", conf)
		}
	})

	t.Run("rpm", func(t *testing.T) {
		for _, p := range []string{serverRPM, agentRPM} {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < 1<<20 || !bytes.HasPrefix(b, []byte{0xed, 0xab, 0xee, 0xdb}) {
				t.Errorf("%s: %d bytes, not an RPM (lead % x)", p, len(b), b[:4])
			}
		}
		if _, err := exec.LookPath("rpm"); err != nil {
			t.Skip("no rpm here to list the packages")
		}
		for _, p := range []string{serverRPM, agentRPM} {
			if out := cmdOut(t, "rpm", "-K", "--nosignature", p); !strings.Contains(out, "digests OK") {
				t.Errorf("rpm -K %s: %s", p, out)
			}
		}
		if got := cmdOut(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}", serverRPM); got != "ajard "+version+" x86_64" {
			t.Errorf("rpm name, version, arch: %q", got)
		}
		files := cmdOut(t, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES} %{FILEFLAGS:fflags}\n]", serverRPM)
		for _, want := range []string{
			"-rwxr-xr-x root:root /usr/bin/ajard \n",
			"-rwxr-xr-x root:root /usr/bin/ajar \n",
			"-rw-r----- root:root /etc/ajar/ajard.toml cn\n", // config, noreplace
			"drwxr-x--- root:root /var/lib/ajar \n",
			"-rw-r--r-- root:root /usr/lib/systemd/system/ajard.service \n",
		} {
			if !strings.Contains(files, want) {
				t.Errorf("rpm files of ajard: no %q in\n%s", want, files)
			}
		}
		if scripts := cmdOut(t, "rpm", "-qp", "--scripts", serverRPM); !strings.Contains(scripts, "postinstall scriptlet") || !strings.Contains(scripts, "useradd") {
			t.Errorf("rpm scripts of ajard:\n%s", scripts)
		}
		if agent := cmdOut(t, "rpm", "-qp", "--list", agentRPM); !strings.Contains(agent, "/usr/bin/ajar-agent\n") || !strings.Contains(agent, "/usr/lib/systemd/system/ajar-agent.service\n") || strings.Contains(agent, "ajard") {
			t.Errorf("rpm files of ajar-agent:\n%s", agent)
		}
	})

	t.Run("install into a throwaway root", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("dpkg --root sets owners: needs root")
		}
		for _, tool := range []string{"dpkg", "useradd", "systemctl"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("no %s here", tool)
			}
		}
		r := newRoot(t)
		dpkg := func(args ...string) {
			t.Helper()
			cmdOut(t, "dpkg", append([]string{"--root=" + r, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
		}
		dpkg("-i", serverDeb, agentDeb)

		uid, gid := userOf(t, r, "ajar")
		if uid == 0 || uid >= 1000 {
			t.Errorf("user ajar has uid %d, want a system user", uid)
		}
		for _, c := range []struct {
			path     string
			mode     os.FileMode
			uid, gid int
		}{
			{"usr/bin/ajard", 0o755, 0, 0},
			{"usr/bin/ajar", 0o755, 0, 0},
			{"usr/bin/ajar-agent", 0o755, 0, 0},
			{"etc/ajar", 0o750 | os.ModeDir, 0, gid},
			{"etc/ajar/ajard.toml", 0o640, 0, gid},
			{"var/lib/ajar", 0o750 | os.ModeDir, uid, gid},
			{"var/lib/ajar-agent", 0o700 | os.ModeDir, 0, 0},
			{"lib/systemd/system/ajard.service", 0o644, 0, 0},
		} {
			fi, err := os.Stat(filepath.Join(r, c.path))
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
				t.Errorf("/%s: %v %d:%d, want %v %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
			}
		}
		for _, unit := range []string{"ajard.service", "ajar-agent.service"} {
			if _, err := os.Lstat(filepath.Join(r, "etc/systemd/system/multi-user.target.wants", unit)); err != nil {
				t.Errorf("%s is not enabled: %v", unit, err)
			}
		}
		for _, b := range []string{"ajard --version", "ajar version", "ajar-agent --version"} {
			argv := strings.Fields(b)
			got := cmdOut(t, filepath.Join(r, "usr/bin", argv[0]), argv[1:]...)
			if want := fmt.Sprintf("%s %s (commit %s, ", argv[0], version, commit); !strings.HasPrefix(got, want) {
				t.Errorf("%s printed %q, want %q...", b, got, want)
			}
		}
		if got := cmdOut(t, filepath.Join(r, "usr/bin/ajard"), "config", "check", filepath.Join(r, "etc/ajar/ajard.toml")); !strings.HasSuffix(got, ": ok\n") {
			t.Errorf("config check of the installed file: %q", got)
		}
		// The agent locks nothing before enrollment: its unit waits for the
		// credential, and the agent itself refuses to run without one
		// (before it opens netlink).
		unitText, err := os.ReadFile(filepath.Join(r, "lib/systemd/system/ajar-agent.service"))
		if err != nil || !strings.Contains(string(unitText), "\nConditionPathExists=/var/lib/ajar-agent/agent.json\n") {
			t.Errorf("the agent's unit does not wait for enrollment: %v", err)
		}
		run := exec.Command(filepath.Join(r, "usr/bin/ajar-agent"), "run", "--state-dir", filepath.Join(r, "var/lib/ajar-agent"))
		if b, err := run.CombinedOutput(); err == nil || !strings.Contains(string(b), "not enrolled") {
			t.Errorf("ajar-agent run before enrollment: %v %s", err, b)
		}
		verifyUnits(t, r)
		serveAsServiceUser(t, r, uid, gid)

		dpkg("--purge", "ajard", "ajar-agent")
		for _, gone := range []string{"usr/bin/ajard", "usr/bin/ajar", "usr/bin/ajar-agent", "etc/ajar/ajard.toml", "lib/systemd/system/ajard.service", "lib/systemd/system/ajar-agent.service", "etc/systemd/system/multi-user.target.wants/ajard.service"} {
			if _, err := os.Lstat(filepath.Join(r, gone)); err == nil {
				t.Errorf("/%s is still there after the purge", gone)
			}
		}
	})

	if out, ok := <-lintianDone; ok {
		var errs []string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "E: ") {
				errs = append(errs, line)
			}
		}
		if len(errs) > 0 {
			t.Errorf("lintian found errors:\n%s", strings.Join(errs, "\n"))
		}
		t.Logf("lintian:\n%s", out)
	}
}

// serveAsServiceUser starts the installed ajard as the service's user and
// group with the installed config (its paths moved under r, the port a
// free one): the user can read its config and write its data folder, and
// the packaged settings serve (TLS with a certificate made in the folder).
func serveAsServiceUser(t *testing.T, r string, uid, gid int) {
	data := filepath.Join(r, "var/lib/ajar")
	ready := filepath.Join(data, "ready")
	// As the unit runs it: UMask=0027.
	cmd := exec.Command("/bin/sh", "-c", `umask 0027 && exec "$0" "$@"`, filepath.Join(r, "usr/bin/ajard"), "--config", filepath.Join(r, "etc/ajar/ajard.toml"),
		"--listen", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(data, "ajar.db"), "--data-dir", data, "--ready-file", ready)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("ajard as user ajar: %v\n%s", err, log.String())
		}
	}()
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			url = string(b)
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ajard as user ajar exited: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ajard as user ajar did not start:\n%s", log.String())
		}
	}
	if !strings.HasPrefix(url, "https://") {
		t.Errorf("the packaged config serves %s, want https (tls = auto)", url)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the self-signed certificate just made
	resp, err := hc.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v\n%s", err, log.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s", resp.Status)
	}
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s: owner %d, mode %v; want the service's, nothing for others", e.Name(), st.Uid, fi.Mode())
		}
	}
}

// verifyUnits runs systemd-analyze verify and security on the units
// installed under r, with the machine's own targets copied in (the units
// name them).
func verifyUnits(t *testing.T, r string) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("no systemd-analyze here: units not verified")
		return
	}
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	if len(targets) == 0 {
		t.Log("no systemd targets on this machine: units not verified")
		return
	}
	for _, tg := range targets {
		b, err := os.ReadFile(tg)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(r, "lib/systemd/system", filepath.Base(tg)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// verify exits 0 on warnings (an unknown key, a bad value it
	// ignores): any output is a failure too.
	cmd := exec.Command("systemd-analyze", "verify", "--root="+r, "--man=no", "ajard.service", "ajar-agent.service")
	if b, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, b)
	}
	// The sandbox, as systemd rates it (0 = fully locked down, 10 = none).
	for unit, most := range map[string]float64{"ajard.service": 2.0, "ajar-agent.service": 3.0} {
		b, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--root="+r, unit).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(unit) + `: ([0-9.]+)`).FindSubmatch(b)
		if m == nil {
			t.Errorf("systemd-analyze security %s printed no level:\n%s", unit, b)
			continue
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > most {
			t.Errorf("%s: exposure level %.1f, want at most %.1f:\n%s", unit, level, most, b)
		} else {
			t.Logf("%s: exposure level %.1f", unit, level)
		}
	}
}

// newRoot makes an empty root for dpkg --root: its database, and the
// account files useradd --prefix extends.
func newRoot(t *testing.T) string {
	r := t.TempDir()
	for _, d := range []string{r, filepath.Dir(r)} { // for the service user too
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/gshadow": "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(r, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// userOf returns a user's uid and gid from r's /etc/passwd.
func userOf(t *testing.T, r, name string) (int, int) {
	b, err := os.ReadFile(filepath.Join(r, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 4 && f[0] == name {
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			return uid, gid
		}
	}
	t.Fatalf("no user %s in the root's /etc/passwd:\n%s", name, b)
	return 0, 0
}

func cmdOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// The packaged binaries do not link nFPM or anything else of this tool.
func TestBinariesDoNotLinkPackaging(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/ajard", "../../cmd/ajar", "../../cmd/ajar-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps printed only %d packages", len(deps))
	}
	for _, d := range deps {
		for _, f := range []string{"github.com/goreleaser/", "github.com/spf13/cobra/doc", "github.com/cpuguy83/go-md2man"} {
			if strings.HasPrefix(d, f) {
				t.Errorf("a shipped binary links %s", d)
			}
		}
	}
}
