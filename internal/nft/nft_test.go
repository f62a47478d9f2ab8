package nft

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/enforce"
	"github.com/ajarhq/ajar/internal/enforce/enforcetest"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/netns"
)

var update = flag.Bool("update", false, "rewrite testdata/ruleset.golden")

var _ enforce.Enforcer = (*Firewall)(nil)

const (
	testPort      = 2222
	testOtherPort = 8080
	dialTimeout   = 300 * time.Millisecond
)

// lab is a VM namespace with TCP+UDP echo servers on testPort and a TCP one
// on testOtherPort, and two clients A and B, all on one bridged LAN.
type lab struct {
	vm, a, b    *netns.NS
	vm4, a4, b4 netip.Addr
	vm6, a6, b6 netip.Addr
	fw          *Firewall
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func newLab(t *testing.T) *lab {
	t.Helper()
	netns.Require(t)
	lan := netns.NewLAN(t)
	l := &lab{
		vm4: netip.MustParseAddr("198.51.100.10"), vm6: netip.MustParseAddr("2001:db8::10"),
		a4: netip.MustParseAddr("198.51.100.21"), a6: netip.MustParseAddr("2001:db8::21"),
		b4: netip.MustParseAddr("198.51.100.42"), b6: netip.MustParseAddr("2001:db8::42"),
	}
	l.vm = lan.AddHost(t, "vm", pfx("198.51.100.10/24"), pfx("2001:db8::10/64"))
	l.a = lan.AddHost(t, "a", pfx("198.51.100.21/24"), pfx("2001:db8::21/64"))
	l.b = lan.AddHost(t, "b", pfx("198.51.100.42/24"), pfx("2001:db8::42/64"))
	serveEcho(t, l.vm, testPort, true)
	serveEcho(t, l.vm, testOtherPort, false)
	fw, err := New(Options{NetNS: int(l.vm.Open(t).Fd())})
	if err != nil {
		t.Fatal(err)
	}
	l.fw = fw
	return l
}

// serveEcho runs TCP (and UDP) echo servers on port inside ns until t ends.
func serveEcho(t *testing.T, ns *netns.NS, port int, udp bool) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		if udp {
			pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		}
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns.Name(), err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	if pc != nil {
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		})
	}
	t.Cleanup(func() {
		ln.Close()
		if pc != nil {
			pc.Close()
		}
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// nsOf returns the client namespace that owns src.
func (l *lab) nsOf(t *testing.T, src netip.Addr) *netns.NS {
	t.Helper()
	switch src {
	case l.a4, l.a6:
		return l.a
	case l.b4, l.b6:
		return l.b
	}
	t.Fatalf("no namespace has %v", src)
	return nil
}

func (l *lab) vmAddr(src netip.Addr) netip.Addr {
	if src.Is4() {
		return l.vm4
	}
	return l.vm6
}

// dial opens a TCP connection from src to the VM's port.
func (l *lab) dial(t *testing.T, src netip.Addr, port int) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := l.nsOf(t, src).Do(func() error {
		d := net.Dialer{Timeout: dialTimeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(l.vmAddr(src), uint16(port)).String())
		return err
	})
	return c, err
}

// reachable is the suite's Reachable: a TCP connect or a UDP echo round
// trip from src's namespace within dialTimeout.
func (l *lab) reachable(t *testing.T, src netip.Addr, port int, proto string) bool {
	t.Helper()
	if proto == jit.ProtoTCP {
		c, err := l.dial(t, src, port)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	var ok bool
	err := l.nsOf(t, src).Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.vmAddr(src), uint16(port))))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(dialTimeout))
		if _, err := c.Write([]byte("ping")); err != nil {
			return nil
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		ok = err == nil && string(buf[:n]) == "ping"
		return nil
	})
	if err != nil {
		t.Fatalf("udp from %v: %v", src, err)
	}
	return ok
}

func TestEnforcerSuite(t *testing.T) {
	for _, fam := range []string{"IPv4", "IPv6"} {
		t.Run(fam, func(t *testing.T) {
			enforcetest.Run(t, func(t *testing.T) enforcetest.Harness {
				l := newLab(t)
				h := enforcetest.Harness{
					Enforcer: l.fw, VM: jit.VM{ID: "vm1", Name: "vm", Backend: jit.BackendAgent},
					SourceA: l.a4, SourceB: l.b4, SourceNet: pfx("198.51.100.16/28"),
					Port: testPort, OtherPort: testOtherPort, Reachable: l.reachable,
				}
				if fam == "IPv6" {
					h.SourceA, h.SourceB, h.SourceNet = l.a6, l.b6, pfx("2001:db8::/122")
				}
				return h
			})
		})
	}
}

func goldenState() jit.DesiredState {
	g := func(id string, port int, proto, src string, secs int64) jit.GrantRule {
		return jit.GrantRule{ID: id, Port: port, Protocol: proto, Source: src, RemainingSeconds: secs,
			EndTime: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	return jit.DesiredState{
		VMID: "vm1", Revision: 7,
		Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}, {Port: 53, Protocol: jit.ProtoUDP}, {Port: 3389, Protocol: jit.ProtoAny}},
		Grants: []jit.GrantRule{
			g("v4-single", 22, jit.ProtoTCP, "198.51.100.7/32", 3600),
			g("v4-bare", 53, jit.ProtoUDP, "198.51.100.8", 1800),
			g("v4-cidr", 3389, jit.ProtoAny, "198.51.100.128/25", 7200),
			g("v4-nested", 3389, jit.ProtoTCP, "198.51.100.130/32", 9000),
			g("v6-single", 22, jit.ProtoTCP, "2001:db8::7/128", 3600),
			g("v6-cidr", 53, jit.ProtoUDP, "2001:db8:1::/48", 600),
			g("expired", 22, jit.ProtoTCP, "198.51.100.99/32", 0),
		},
	}
}

var expiresRE = regexp.MustCompile(` expires [0-9dhms]+`)

// requireNFT skips t unless the nft(8) CLI, which tests use to read and
// tamper with the ruleset, is installed.
func requireNFT(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft(8) not installed (apt-get install nftables)")
	}
}

func listTable(t *testing.T, ns *netns.NS) string {
	t.Helper()
	requireNFT(t)
	return expiresRE.ReplaceAllString(ns.Run(t, "nft", "list", "table", "inet", TableName), "")
}

func TestGolden(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if err := l.fw.Apply(ctx, jit.VM{}, goldenState()); err != nil {
		t.Fatal(err)
	}
	got := listTable(t, l.vm)
	const golden = "testdata/ruleset.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("nft list table inet ajar (-want +got):\n%s", diff)
	}
	// Applying again replaces the table rather than adding to it.
	if err := l.fw.Apply(ctx, jit.VM{}, goldenState()); err != nil {
		t.Fatal(err)
	}
	if again := listTable(t, l.vm); again != got {
		t.Errorf("second Apply changed the table:\n%s", cmp.Diff(got, again))
	}
}

func TestGrantTimeout(t *testing.T) {
	l := newLab(t)
	st := jit.DesiredState{
		Lock:   []jit.PortLock{{Port: testPort, Protocol: jit.ProtoTCP}},
		Grants: []jit.GrantRule{{ID: "g", Port: testPort, Protocol: jit.ProtoTCP, Source: l.a4.String() + "/32", RemainingSeconds: 2}},
	}
	start := time.Now()
	if err := l.fw.Apply(context.Background(), jit.VM{}, st); err != nil {
		t.Fatal(err)
	}
	if !l.reachable(t, l.a4, testPort, jit.ProtoTCP) {
		t.Fatal("granted port unreachable")
	}
	for time.Since(start) < 3500*time.Millisecond {
		if !l.reachable(t, l.a4, testPort, jit.ProtoTCP) {
			elapsed := time.Since(start)
			if elapsed < 1500*time.Millisecond {
				t.Fatalf("grant closed after %v, before its 2 s timeout", elapsed)
			}
			t.Logf("grant closed by the kernel after %v", elapsed)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("grant still open %v after a 2 s timeout", time.Since(start))
}

// echo writes a byte on c and reads it back within timeout.
func echo(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

func TestKillConnections(t *testing.T) {
	for _, fam := range []string{"IPv4", "IPv6"} {
		t.Run(fam, func(t *testing.T) {
			l := newLab(t)
			src := l.a4
			if fam == "IPv6" {
				src = l.a6
			}
			ctx := context.Background()
			lock := []jit.PortLock{{Port: testPort, Protocol: jit.ProtoAny}}
			grant := jit.GrantRule{ID: "g", Port: testPort, Protocol: jit.ProtoAny,
				Source: netip.PrefixFrom(src, src.BitLen()).String(), RemainingSeconds: 3600}
			if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock, Grants: []jit.GrantRule{grant}}); err != nil {
				t.Fatal(err)
			}
			c, err := l.dial(t, src, testPort)
			if err != nil {
				t.Fatalf("dial during grant: %v", err)
			}
			defer c.Close()
			if err := echo(c, time.Second); err != nil {
				t.Fatalf("echo during grant: %v", err)
			}
			// The grant ends; the established connection lives on.
			if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock}); err != nil {
				t.Fatal(err)
			}
			if l.reachable(t, src, testPort, jit.ProtoTCP) {
				t.Fatal("new connection admitted after the grant ended")
			}
			if err := echo(c, time.Second); err != nil {
				t.Fatalf("established connection cut by the grant's end: %v", err)
			}
			// Someone else's connection on another port is left alone.
			other, err := l.dial(t, src, testOtherPort)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()

			if err := l.fw.KillConnections(ctx, grant); err != nil {
				t.Fatalf("KillConnections: %v", err)
			}
			if err := echo(c, 500*time.Millisecond); err == nil {
				t.Fatal("connection still works after KillConnections")
			}
			if err := echo(other, time.Second); err != nil {
				t.Fatalf("connection to another port cut: %v", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	requireNFT(t)
	l := newLab(t)
	ctx := context.Background()
	st := goldenState()
	expectDrift := func(step string, want bool) {
		t.Helper()
		drift, reason, err := l.fw.Check(ctx, st)
		if err != nil {
			t.Fatalf("%s: Check: %v", step, err)
		}
		if drift != want {
			t.Fatalf("%s: drift = %v (%q), want %v", step, drift, reason, want)
		}
		if drift {
			t.Logf("%s: %s", step, reason)
		}
	}
	expectDrift("never applied", true)
	if err := l.fw.Apply(ctx, jit.VM{}, st); err != nil {
		t.Fatal(err)
	}
	expectDrift("applied", false)

	l.vm.Run(t, "nft", "delete", "table", "inet", TableName)
	expectDrift("table deleted", true)

	reapply := func() {
		t.Helper()
		if err := l.fw.Apply(ctx, jit.VM{}, st); err != nil {
			t.Fatal(err)
		}
		expectDrift("re-applied", false)
	}
	reapply()
	l.vm.Run(t, "nft", "flush", "chain", "inet", TableName, InputChainName)
	expectDrift("chain flushed", true)

	reapply()
	l.vm.Run(t, "nft", "delete", "rule", "inet", TableName, OutputChainName, "handle",
		lastHandle(t, l.vm.Run(t, "nft", "-a", "list", "chain", "inet", TableName, OutputChainName)))
	expectDrift("output rule deleted", true)

	reapply()
	l.vm.Run(t, "nft", "delete", "element", "inet", TableName, setGrant4TCP, "{ 198.51.100.7 . 22 }")
	expectDrift("grant element deleted", true)

	reapply()
	l.vm.Run(t, "nft", "add", "element", "inet", TableName, setGrant4TCP, "{ 198.51.100.66 . 22 timeout 1h }")
	expectDrift("grant element added", true)

	reapply()
	l.vm.Run(t, "nft", "delete", "element", "inet", TableName, setLockTCP, "{ 22 }")
	expectDrift("lock element deleted", true)

	reapply()
	l.vm.Run(t, "nft", "insert", "rule", "inet", TableName, InputChainName, "tcp", "dport", "22", "accept")
	expectDrift("rule inserted", true)

	reapply()
	l.vm.Run(t, "nft", "add", "chain", "inet", TableName, "extra")
	expectDrift("chain added", true)

	reapply()
	l.vm.Run(t, "nft", "add", "table", "inet", TableName, "{ flags dormant; }")
	expectDrift("table dormant", true)

	reapply()
	changed := st
	changed.Lock = append([]jit.PortLock{{Port: 443, Protocol: jit.ProtoTCP}}, st.Lock...)
	if drift, _, err := l.fw.Check(ctx, changed); err != nil || !drift {
		t.Fatalf("Check(another state) = %v, %v; want drift", drift, err)
	}

	// No lock: the table must be gone.
	none := jit.DesiredState{}
	if drift, _, err := l.fw.Check(ctx, none); err != nil || !drift {
		t.Fatalf("Check(no lock) with the table present = %v, %v; want drift", drift, err)
	}
	if err := l.fw.Apply(ctx, jit.VM{}, none); err != nil {
		t.Fatal(err)
	}
	if drift, reason, err := l.fw.Check(ctx, none); err != nil || drift {
		t.Fatalf("Check(no lock) after Apply = %v (%s), %v; want none", drift, reason, err)
	}
}

var handleRE = regexp.MustCompile(`# handle (\d+)`)

// lastHandle returns the handle of the last rule `nft -a list chain` shows.
func lastHandle(t *testing.T, listing string) string {
	t.Helper()
	m := handleRE.FindAllStringSubmatch(listing, -1)
	if len(m) < 2 { // the chain's own handle comes first
		t.Fatalf("no rule handle in:\n%s", listing)
	}
	return m[len(m)-1][1]
}

func TestOtherTablesUntouched(t *testing.T) {
	requireNFT(t)
	l := newLab(t)
	l.vm.Run(t, "nft", "add", "table", "inet", "other")
	l.vm.Run(t, "nft", "add", "chain", "inet", "other", "c", "{ type filter hook input priority 0; policy accept; }")
	l.vm.Run(t, "nft", "add", "rule", "inet", "other", "c", "tcp", "dport", "9999", "counter", "accept")
	l.vm.Run(t, "nft", "add", "table", "ip", "ajar") // same name, other family
	before := l.vm.Run(t, "nft", "list", "ruleset")

	ctx := context.Background()
	if err := l.fw.Apply(ctx, jit.VM{}, goldenState()); err != nil {
		t.Fatal(err)
	}
	if err := l.fw.Apply(ctx, jit.VM{}, goldenState()); err != nil {
		t.Fatal(err)
	}
	during := l.vm.Run(t, "nft", "list", "ruleset")
	if !strings.Contains(during, "table inet "+TableName) {
		t.Fatal("table not applied")
	}
	if err := l.fw.Remove(ctx, jit.VM{}); err != nil {
		t.Fatal(err)
	}
	if err := l.fw.Remove(ctx, jit.VM{}); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	after := l.vm.Run(t, "nft", "list", "ruleset")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("ruleset outside table inet ajar changed (-before +after):\n%s", diff)
	}
}

func TestWorks(t *testing.T) {
	l := newLab(t)
	if err := l.fw.Works(); err != nil {
		t.Fatalf("Works() = %v", err)
	}
}

func TestApplyCancelled(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.fw.Apply(ctx, jit.VM{}, goldenState()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply(cancelled) = %v", err)
	}
	if _, _, err := l.fw.Check(ctx, goldenState()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check(cancelled) = %v", err)
	}
	g := goldenState().Grants[0]
	if err := l.fw.KillConnections(ctx, g); !errors.Is(err, context.Canceled) {
		t.Fatalf("KillConnections(cancelled) = %v", err)
	}
}

func TestApplyInvalid(t *testing.T) {
	fw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]jit.DesiredState{
		"lock port":      {Lock: []jit.PortLock{{Port: 0, Protocol: jit.ProtoTCP}}},
		"lock protocol":  {Lock: []jit.PortLock{{Port: 22, Protocol: "ICMP"}}},
		"grant source":   {Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}, Grants: []jit.GrantRule{{Port: 22, Protocol: jit.ProtoTCP, Source: "nope", RemainingSeconds: 5}}},
		"grant port":     {Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}, Grants: []jit.GrantRule{{Port: 70000, Protocol: jit.ProtoTCP, Source: "198.51.100.1/32", RemainingSeconds: 5}}},
		"grant protocol": {Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}, Grants: []jit.GrantRule{{Port: 22, Protocol: "SCTP", Source: "198.51.100.1/32", RemainingSeconds: 5}}},
	} {
		if err := fw.Apply(context.Background(), jit.VM{}, st); jit.ErrorCode(err) != jit.EInvalid {
			t.Errorf("%s: Apply = %v, want an invalid error", name, err)
		}
	}
}

// BenchmarkApply10000 applies a state of 10,000 grants (IPv4 and IPv6,
// single addresses and prefixes, TCP, UDP and both) to a fresh namespace.
// bench10000 returns a firewall in a fresh namespace and a desired state
// of 10,000 grants of every shape, with its element count.
func bench10000(b *testing.B) (*Firewall, jit.DesiredState, int) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a network namespace")
	}
	ns := netns.New(b, "bench")
	fw, err := New(Options{NetNS: int(ns.Open(b).Fd())})
	if err != nil {
		b.Fatal(err)
	}
	st := jit.DesiredState{Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoAny}, {Port: 3389, Protocol: jit.ProtoTCP}}}
	protos := []string{jit.ProtoTCP, jit.ProtoUDP, jit.ProtoAny}
	for i := range 10000 {
		var src string
		port := 22
		switch i % 4 {
		case 0: // IPv4 single addresses, told apart by port
			src = fmt.Sprintf("198.51.100.%d/32", i/4%256)
			port = 1000 + i/4/256
		case 1: // IPv4 prefixes that nest in and overlap each other
			src = fmt.Sprintf("198.51.100.%d/28", i/4%16*16)
			port = 2000 + i/4%64
		case 2:
			src = fmt.Sprintf("2001:db8:%x::%x/128", i>>16, i&0xffff)
		case 3:
			src = fmt.Sprintf("2001:db8:%x::/48", i)
		}
		st.Grants = append(st.Grants, jit.GrantRule{ID: fmt.Sprint(i), Port: port,
			Protocol: protos[i%3], Source: src, RemainingSeconds: int64(600 + i)})
	}
	p, err := buildPlan(st, 0)
	if err != nil {
		b.Fatal(err)
	}
	return fw, st, p.elemCount()
}

// BenchmarkApply10000 applies 10,000 grants in one batch.
func BenchmarkApply10000(b *testing.B) {
	fw, st, elems := bench10000(b)
	ctx := context.Background()
	for b.Loop() {
		if err := fw.Apply(ctx, jit.VM{}, st); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(elems), "elements")
}

// BenchmarkCheck10000 is the agent's drift check (once a second) with
// 10,000 grants in place.
func BenchmarkCheck10000(b *testing.B) {
	fw, st, elems := bench10000(b)
	if err := fw.Apply(context.Background(), jit.VM{}, st); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		drift, reason, err := fw.Check(context.Background(), st)
		if err != nil || drift {
			b.Fatalf("check: drift %v (%s), %v", drift, reason, err)
		}
	}
	b.ReportMetric(float64(elems), "elements")
}

// BenchmarkCheckDump10000 is the drift check with 10,000 grants in place
// when it must read the table (a grant ended, or another process committed
// to nftables).
func BenchmarkCheckDump10000(b *testing.B) {
	fw, st, elems := bench10000(b)
	ctx := context.Background()
	if err := fw.Apply(ctx, jit.VM{}, st); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		fw.mu.Lock()
		fw.known = false
		fw.mu.Unlock()
		drift, reason, err := fw.Check(ctx, st)
		if err != nil || drift {
			b.Fatalf("check: drift %v (%s), %v", drift, reason, err)
		}
	}
	b.ReportMetric(float64(elems), "elements")
}

// TestGeneration: the ruleset generation Check relies on moves by one with
// each Apply and with any other process's commit, and a change by another
// process is found even right after a clean Check of the same state.
func TestGeneration(t *testing.T) {
	requireNFT(t)
	l := newLab(t)
	st := goldenState()
	ctx := context.Background()
	g0, err := l.fw.generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.fw.Apply(ctx, jit.VM{}, st); err != nil {
		t.Fatal(err)
	}
	g1, err := l.fw.generation(ctx)
	if err != nil || g1 != g0+1 {
		t.Fatalf("generation after one Apply = %d (%v), want %d", g1, err, g0+1)
	}
	for range 3 { // answered from the generation
		if drift, reason, err := l.fw.Check(ctx, st); err != nil || drift {
			t.Fatalf("Check after Apply = %v %q %v", drift, reason, err)
		}
	}
	l.vm.Run(t, "nft", "add", "table", "inet", "other")
	if g2, err := l.fw.generation(ctx); err != nil || g2 <= g1 {
		t.Fatalf("generation after another process's commit = %d (%v), want more than %d", g2, err, g1)
	}
	if drift, reason, err := l.fw.Check(ctx, st); err != nil || drift {
		t.Fatalf("Check after an unrelated table was added = %v %q %v", drift, reason, err)
	}
	l.vm.Run(t, "nft", "delete", "element", "inet", TableName, setGrant4TCP, "{ 198.51.100.7 . 22 }")
	if drift, _, err := l.fw.Check(ctx, st); err != nil || !drift {
		t.Fatalf("Check after a grant element was deleted = %v %v, want drift", drift, err)
	}
}

// TestChattySessionCutAtExpiry: a session in which both the VM and the
// client send every 250 ms is cut when its grant ends and its connections
// are killed, and stays cut: neither side's packets may bring a conntrack
// entry back through TCP mid-stream pickup (nf_conntrack_tcp_loose stays
// at its default of 1 in the VM's namespace).
func TestChattySessionCutAtExpiry(t *testing.T) {
	const chattyPort = 2223
	for _, fam := range []string{"IPv4", "IPv6"} {
		t.Run(fam, func(t *testing.T) {
			l := newLab(t)
			if loose := strings.TrimSpace(l.vm.Run(t, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_loose")); loose != "1" {
				t.Fatalf("nf_conntrack_tcp_loose = %s in the VM, want the default 1", loose)
			}
			src := l.a4
			if fam == "IPv6" {
				src = l.a6
			}
			ctx := context.Background()
			lock := []jit.PortLock{{Port: chattyPort, Protocol: jit.ProtoTCP}}
			grant := jit.GrantRule{ID: "g", Port: chattyPort, Protocol: jit.ProtoTCP,
				Source: netip.PrefixFrom(src, src.BitLen()).String(), RemainingSeconds: 3600}
			if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock, Grants: []jit.GrantRule{grant}}); err != nil {
				t.Fatal(err)
			}
			accepted := l.vm.ServeChat(t, fmt.Sprintf(":%d", chattyPort))
			c, err := l.dial(t, src, chattyPort)
			if err != nil {
				t.Fatalf("dial during grant: %v", err)
			}
			client := netns.Chat(t, c)
			var vm *netns.Chatter
			select {
			case vm = <-accepted:
			case <-time.After(2 * time.Second):
				t.Fatal("VM did not accept the connection")
			}
			for i := 0; client.Received.Load() == 0 || vm.Received.Load() == 0; i++ {
				if i == 40 {
					t.Fatal("session carries no data during the grant")
				}
				time.Sleep(50 * time.Millisecond)
			}

			// The grant ends and its connections are cut.
			if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock}); err != nil {
				t.Fatal(err)
			}
			if err := l.fw.KillConnections(ctx, grant); err != nil {
				t.Fatalf("KillConnections: %v", err)
			}
			time.Sleep(100 * time.Millisecond) // what was on the wire arrives
			// Twelve ticks each way: each would re-create the entry if
			// mid-stream pickup could.
			if quiet, got := netns.Quiet(12*netns.TickEvery, client, vm); !quiet {
				t.Errorf("bytes received after the session was cut: %d by the client, %d by the VM", got[0], got[1])
			}
		})
	}
}

// TestSessionPickedUpInTheVMsDirectionCutAtExpiry: a connection whose
// conntrack entry was lost during the grant and picked up again from the
// VM's side (which the grant allows) is held in an entry the other way
// round; it is cut at expiry all the same.
func TestSessionPickedUpInTheVMsDirectionCutAtExpiry(t *testing.T) {
	const chattyPort = 2223
	l := newLab(t)
	ctx := context.Background()
	lock := []jit.PortLock{{Port: chattyPort, Protocol: jit.ProtoTCP}}
	grant := jit.GrantRule{ID: "g", Port: chattyPort, Protocol: jit.ProtoTCP, Source: l.a4.String() + "/32", RemainingSeconds: 3600}
	if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock, Grants: []jit.GrantRule{grant}}); err != nil {
		t.Fatal(err)
	}
	l.vm.ServeChat(t, fmt.Sprintf(":%d", chattyPort))
	c, err := l.dial(t, l.a4, chattyPort)
	if err != nil {
		t.Fatalf("dial during grant: %v", err)
	}
	client := netns.Receive(t, c) // the client only acknowledges: the VM's packets come first
	heard := func(what string, after int64) {
		t.Helper()
		for i := 0; client.Received.Load() <= after; i++ {
			if i == 40 {
				t.Fatalf("%s: the client hears nothing", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	heard("during the grant", 0)
	time.Sleep(100 * time.Millisecond) // past the client's delayed acknowledgement
	if err := l.fw.KillConnections(ctx, grant); err != nil {
		t.Fatal(err)
	}
	heard("entry lost during the grant, picked up from the VM's side", client.Received.Load())

	if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock}); err != nil {
		t.Fatal(err)
	}
	if err := l.fw.KillConnections(ctx, grant); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if quiet, got := netns.Quiet(12*netns.TickEvery, client); !quiet {
		t.Fatalf("client received %d bytes after the grant ended and its connections were cut", got[0])
	}
}

// TestCheckEndingGrant: a grant's element the kernel is about to time out
// after the grant ended is no drift, nor are neighbouring grants the
// kernel holds as one element; an element the kernel would keep, or one
// no grant ever had, is drift.
func TestCheckEndingGrant(t *testing.T) {
	requireNFT(t)
	l := newLab(t)
	ctx := context.Background()
	grant := func(src string, secs int64) jit.GrantRule {
		return jit.GrantRule{ID: src, Port: 22, Protocol: jit.ProtoTCP, Source: src, RemainingSeconds: secs}
	}
	state := func(grants ...jit.GrantRule) jit.DesiredState {
		return jit.DesiredState{Lock: []jit.PortLock{{Port: 22, Protocol: jit.ProtoTCP}}, Grants: grants}
	}
	apply := func(st jit.DesiredState) {
		t.Helper()
		if err := l.fw.Apply(ctx, jit.VM{}, st); err != nil {
			t.Fatal(err)
		}
	}
	expectDrift := func(step string, st jit.DesiredState, want bool) {
		t.Helper()
		drift, reason, err := l.fw.Check(ctx, st)
		if err != nil {
			t.Fatalf("%s: Check: %v", step, err)
		}
		if drift != want {
			t.Fatalf("%s: drift = %v (%q), want %v\n%s", step, drift, reason, want,
				l.vm.Run(t, "nft", "list", "set", "inet", TableName, setGrant4TCP))
		}
	}
	nft := func(args ...string) { l.vm.Run(t, "nft", args...) }
	elem := func(s string) string { return "{ " + s + " }" }

	apply(state(grant("198.51.100.7/32", 1), grant("198.51.100.8/32", 3600)))
	ended := state(grant("198.51.100.7/32", 0), grant("198.51.100.8/32", 3600))
	if set := l.vm.Run(t, "nft", "list", "set", "inet", TableName, setGrant4TCP); !strings.Contains(set, "198.51.100.7 . 22") {
		t.Fatalf("the ending grant's element is already gone:\n%s", set)
	}
	expectDrift("grant ended, its element about to time out", ended, false)

	nft("delete", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.7 . 22"))
	nft("add", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.7 . 22 timeout 1h"))
	expectDrift("ended grant's element given an hour", ended, true)

	apply(ended)
	nft("add", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.9 . 22 timeout 1s"))
	expectDrift("element no grant had, about to time out", ended, true)

	// A grant with a second left may already have lost its element.
	apply(state(grant("198.51.100.7/32", 1), grant("198.51.100.8/32", 3600)))
	nft("delete", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.7 . 22"))
	expectDrift("element of a grant with two seconds left gone", state(grant("198.51.100.7/32", 2), grant("198.51.100.8/32", 3600)), true)
	expectDrift("element of a grant with a second left gone", state(grant("198.51.100.7/32", 1), grant("198.51.100.8/32", 3600)), false)

	// Neighbours applied with equal timeouts are one element; a second
	// later their rounded timeouts can differ, and the plan would write two.
	apply(state(grant("198.51.100.20/32", 10), grant("198.51.100.21/32", 10)))
	nft("add", "table", "inet", "other") // a new generation: Check reads the table
	expectDrift("neighbours now with different timeouts", state(grant("198.51.100.20/32", 9), grant("198.51.100.21/32", 10)), false)
	nft("delete", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.20-198.51.100.21 . 22"))
	nft("add", "element", "inet", TableName, setGrant4TCP, elem("198.51.100.20-198.51.100.22 . 22 timeout 10s"))
	expectDrift("neighbours' element widened", state(grant("198.51.100.20/32", 9), grant("198.51.100.21/32", 10)), true)
}

func TestCover(t *testing.T) {
	a := netip.MustParseAddr
	r := func(port uint16, lo, hi string) portRange { return portRange{port: port, lo: a(lo), hi: a(hi)} }
	c := cover{}
	for _, x := range []portRange{
		r(22, "198.51.100.10", "198.51.100.10"), r(22, "198.51.100.11", "198.51.100.20"), // touching
		r(22, "198.51.100.15", "198.51.100.30"), // overlapping
		r(22, "198.51.100.40", "198.51.100.40"), r(23, "198.51.100.0", "198.51.100.255"),
		r(24, "255.255.255.254", "255.255.255.255"), r(24, "255.255.255.250", "255.255.255.255"),
	} {
		c.add(x)
	}
	c.merge()
	want := cover{
		22: {r(22, "198.51.100.10", "198.51.100.30"), r(22, "198.51.100.40", "198.51.100.40")},
		23: {r(23, "198.51.100.0", "198.51.100.255")},
		24: {r(24, "255.255.255.250", "255.255.255.255")},
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(portRange{}), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Fatalf("merged cover (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		r    portRange
		want bool
	}{
		{r(22, "198.51.100.10", "198.51.100.30"), true},
		{r(22, "198.51.100.12", "198.51.100.12"), true},
		{r(22, "198.51.100.30", "198.51.100.31"), false},
		{r(22, "198.51.100.9", "198.51.100.10"), false},
		{r(22, "198.51.100.35", "198.51.100.35"), false},
		{r(22, "198.51.100.40", "198.51.100.40"), true},
		{r(22, "198.51.100.41", "198.51.100.41"), false},
		{r(25, "198.51.100.10", "198.51.100.10"), false},
		{r(24, "255.255.255.255", "255.255.255.255"), true},
	} {
		if got := c.contains(tc.r); got != tc.want {
			t.Errorf("contains(%v) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

// TestUDPCutAtExpiry: UDP has no opening packet, so once a grant's
// conntrack entries are deleted neither the VM's datagrams from the locked
// port nor the client's pass again.
func TestUDPCutAtExpiry(t *testing.T) {
	const udpPort = 2224
	l := newLab(t)
	ctx := context.Background()
	lock := []jit.PortLock{{Port: udpPort, Protocol: jit.ProtoUDP}}
	grant := jit.GrantRule{ID: "g", Port: udpPort, Protocol: jit.ProtoUDP, Source: l.a4.String() + "/32", RemainingSeconds: 3600}
	if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock, Grants: []jit.GrantRule{grant}}); err != nil {
		t.Fatal(err)
	}
	var vm, client *net.UDPConn
	vmAddr := netip.AddrPortFrom(l.vm4, udpPort)
	clientAddr := netip.AddrPortFrom(l.a4, 40000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.vm.Do(func() (err error) {
		vm, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(vmAddr))
		return err
	}))
	defer vm.Close()
	must(l.a.Do(func() (err error) {
		client, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(clientAddr))
		return err
	}))
	defer client.Close()
	// gets reports whether c receives a datagram within dialTimeout.
	gets := func(c *net.UDPConn) bool {
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
		_, _, err := c.ReadFromUDPAddrPort(buf)
		return err == nil
	}
	send := func(c *net.UDPConn, to netip.AddrPort) {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort([]byte("tick"), to); err != nil && !errors.Is(err, syscall.EPERM) {
			t.Fatal(err)
		}
	}
	send(client, vmAddr)
	if !gets(vm) {
		t.Fatal("VM got nothing during the grant")
	}
	send(vm, clientAddr)
	if !gets(client) {
		t.Fatal("client got nothing from the VM during the grant")
	}

	if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: lock}); err != nil {
		t.Fatal(err)
	}
	if err := l.fw.KillConnections(ctx, grant); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // the VM first, then the client, twice
		if i%2 == 0 {
			send(vm, clientAddr)
			if gets(client) {
				t.Fatalf("round %d: client got the VM's datagram after the grant's entries were deleted", i)
			}
		} else {
			send(client, vmAddr)
			if gets(vm) {
				t.Fatalf("round %d: VM got the client's datagram after the grant's entries were deleted", i)
			}
		}
	}
}

// TestHostConnectsFromLockedPort: the output chain drops only what could
// revive a connection; a connection the VM opens itself from a locked port
// (its SYN) goes out, and its answers come back.
func TestHostConnectsFromLockedPort(t *testing.T) {
	const lockedPort = 2225
	l := newLab(t)
	ctx := context.Background()
	if err := l.fw.Apply(ctx, jit.VM{}, jit.DesiredState{Lock: []jit.PortLock{{Port: lockedPort, Protocol: jit.ProtoTCP}}}); err != nil {
		t.Fatal(err)
	}
	serveEcho(t, l.a, testOtherPort, false)
	var c net.Conn
	err := l.vm.Do(func() error {
		d := net.Dialer{Timeout: time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.vm4, lockedPort))}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(l.a4, testOtherPort).String())
		return err
	})
	if err != nil {
		t.Fatalf("VM dialing out from locked port %d: %v", lockedPort, err)
	}
	defer c.Close()
	if err := echo(c, time.Second); err != nil {
		t.Fatalf("echo over the VM's own connection: %v", err)
	}
}
