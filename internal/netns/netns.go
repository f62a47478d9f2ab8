// Package netns builds throwaway test networks out of Linux network
// namespaces: uniquely named namespaces, veth pairs, a bridge in a namespace
// of its own, documentation addresses (198.51.100.0/24 and 2001:db8::/32
// only), Go code and commands run inside a namespace, and everything deleted
// again in t.Cleanup. It is test support only: it shells out to ip(8) and
// must never be linked into a binary.
//
// Nothing it creates lands in the caller's own namespace: links are created
// directly inside their target namespaces.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Allowed test prefixes: every address this package assigns lies in one.
var (
	TestNet4 = netip.MustParsePrefix("198.51.100.0/24") // RFC 5737 TEST-NET-2
	TestNet6 = netip.MustParsePrefix("2001:db8::/32")   // RFC 3849 documentation
)

// cmdTimeout bounds every ip(8) invocation.
const cmdTimeout = 20 * time.Second

var (
	requireOnce sync.Once
	requireErr  error
)

// Require skips t unless the test runs as root on a kernel with network
// namespaces and the ip(8) binary is installed.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	requireOnce.Do(func() {
		if _, err := exec.LookPath("ip"); err != nil {
			requireErr = fmt.Errorf("ip(8) not installed (apt-get install iproute2): %w", err)
			return
		}
		if _, err := os.Stat("/proc/self/ns/net"); err != nil {
			requireErr = fmt.Errorf("kernel without network namespaces: %w", err)
		}
	})
	if requireErr != nil {
		t.Skip(requireErr.Error())
	}
}

// NS is one named network namespace (as `ip netns add` makes them).
type NS struct {
	name string
}

// New creates a namespace named prefix-RANDOM with its loopback up, and
// deletes it (with everything in it) when t ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random namespace suffix: %v", err)
	}
	n := &NS{name: "ajt-" + prefix + "-" + hex.EncodeToString(b[:])}
	if out, err := run("ip", "netns", "add", n.name); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := run("ip", "netns", "del", n.name); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Name is the namespace's name, as `ip netns list` shows it.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind mount, which can be opened to get an fd
// for setns(2) or netlink.
func (n *NS) Path() string { return "/run/netns/" + n.name }

// Open returns a file referencing the namespace; it is closed when t ends.
// Its Fd can be passed to netlink libraries (nftables, conntrack).
func (n *NS) Open(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Open(n.Path())
	if err != nil {
		t.Fatalf("open namespace %s: %v", n.name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// IP runs `ip -n NAME args...` and returns its output; failure is fatal.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := run("ip", append([]string{"-n", n.name}, args...)...)
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
	return out
}

// Run runs a command inside the namespace (`ip netns exec`), waits for it
// and returns its combined output; failure is fatal.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.TryRun(name, args...)
	if err != nil {
		t.Fatalf("in %s: %s %s: %v: %s", n.name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// TryRun is Run that returns the error instead of failing the test.
func (n *NS) TryRun(name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// Start starts a command inside the namespace and kills and reaps it when
// t ends. Its output goes to out (which may be nil).
func (n *NS) Start(t testing.TB, out *bytes.Buffer, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := n.Command(context.Background(), name, args...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("in %s: start %s: %v", n.name, name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("in %s: %s did not exit after SIGKILL", n.name, name)
		}
	})
	return cmd
}

// Sysctl sets a sysctl inside the namespace, e.g.
// Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0").
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) })
	if err != nil {
		t.Fatalf("in %s: sysctl %s=%s: %v", n.name, key, value, err)
	}
}

// Do runs fn on an OS thread moved into the namespace, and moves the
// thread back afterwards. Sockets fn opens belong to the namespace and keep
// working after Do returns; goroutines fn starts do NOT run in the
// namespace. If the thread cannot be moved back it is retired rather than
// reused.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(n.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open namespace %s: %w", n.name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.name, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime destroys it when
			// this goroutine exits instead of reusing it elsewhere.
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// AddAddr assigns p (an address with its prefix length) to dev inside the
// namespace. p must lie in TestNet4 or TestNet6; IPv6 addresses skip
// duplicate address detection so they are usable at once.
func (n *NS) AddAddr(t testing.TB, dev string, p netip.Prefix) {
	t.Helper()
	if err := CheckTestAddr(p); err != nil {
		t.Fatal(err)
	}
	args := []string{"addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.IP(t, args...)
}

// CheckTestAddr reports an error unless p lies in TestNet4 or TestNet6.
func CheckTestAddr(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid test address %v", p)
	}
	a := p.Addr()
	if (a.Is4() && TestNet4.Contains(a) && p.Bits() >= TestNet4.Bits()) ||
		(a.Is6() && !a.Is4In6() && TestNet6.Contains(a) && p.Bits() >= TestNet6.Bits()) {
		return nil
	}
	return fmt.Errorf("test address %v is outside %v and %v", p, TestNet4, TestNet6)
}

// LinkUp brings dev up inside the namespace.
func (n *NS) LinkUp(t testing.TB, dev string) {
	t.Helper()
	n.IP(t, "link", "set", dev, "up")
}

// AddBridge creates a bridge named dev inside the namespace and brings it
// up.
func (n *NS) AddBridge(t testing.TB, dev string) {
	t.Helper()
	n.IP(t, "link", "add", dev, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	n.LinkUp(t, dev)
}

// SetMaster enslaves dev to the bridge br, both inside the namespace.
func (n *NS) SetMaster(t testing.TB, dev, br string) {
	t.Helper()
	n.IP(t, "link", "set", dev, "master", br)
}

// Veth creates a veth pair with end aDev inside a and end bDev inside b
// (never in the caller's namespace) and brings both ends up.
func Veth(t testing.TB, a *NS, aDev string, b *NS, bDev string) {
	t.Helper()
	a.IP(t, "link", "add", aDev, "type", "veth", "peer", "name", bDev, "netns", b.name)
	a.LinkUp(t, aDev)
	b.LinkUp(t, bDev)
}

// LAN is an Ethernet segment: a bridge living in a namespace of its own,
// with hosts (namespaces) attached to it through veth pairs.
type LAN struct {
	Switch *NS
	mu     sync.Mutex
	ports  int
}

// BridgeDev is the bridge's name inside the LAN's switch namespace, and
// HostDev the name of each host's interface to the LAN.
const (
	BridgeDev = "br0"
	HostDev   = "eth0"
)

// NewLAN creates the switch namespace with its bridge.
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	l := &LAN{Switch: New(t, "sw")}
	l.Switch.AddBridge(t, BridgeDev)
	return l
}

// AddHost creates a namespace named after name, plugs its interface eth0
// into the LAN's bridge and assigns addrs to it.
func (l *LAN) AddHost(t testing.TB, name string, addrs ...netip.Prefix) *NS {
	t.Helper()
	for _, p := range addrs {
		if err := CheckTestAddr(p); err != nil {
			t.Fatal(err)
		}
	}
	h := New(t, name)
	l.mu.Lock()
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.mu.Unlock()
	Veth(t, h, HostDev, l.Switch, port)
	l.Switch.SetMaster(t, port, BridgeDev)
	for _, p := range addrs {
		h.AddAddr(t, HostDev, p)
	}
	return h
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return string(out), err
}
