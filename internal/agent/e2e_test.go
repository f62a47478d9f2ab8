package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/netns"
)

// testbed is the end-to-end network: ajard in a "server" namespace, the
// real ajar-agent and TCP/UDP echo listeners in a "vm" namespace, and two
// client namespaces, all on one bridge in a namespace of its own.
type testbed struct {
	t              testing.TB
	lan            *netns.LAN
	srvNS, vm      *netns.NS
	a, b           *netns.NS
	srv            *ajardtest.Server
	vmID           string
	alice, bob     *client.Client // requesters, calling from A and B
	alice6         *client.Client // alice calling over IPv6
	stateDir       string
	agent          *exec.Cmd
	agentLog       *lockedBuffer
	agentExited    chan struct{}
	serverAddr     string
	port           int
	a4, b4, a6, b6 netip.Addr
}

var (
	srv4, vm4, a4, b4 = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.22")
	vm6, a6, b6       = netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::21"), netip.MustParseAddr("2001:db8::22")
	srv6              = netip.MustParseAddr("2001:db8::1")
)

func pfx(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 24)
	}
	return netip.PrefixFrom(a, 64)
}

// dialer returns a DialContext that makes connections from inside ns.
func dialer(ns *netns.NS, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			d := net.Dialer{Timeout: timeout}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func newTestbed(t testing.TB) *testbed {
	netns.Require(t)
	tb := &testbed{t: t, port: 2222, a4: a4, b4: b4, a6: a6, b6: b6}
	tb.lan = netns.NewLAN(t)
	tb.srvNS = tb.lan.AddHost(t, "srv", pfx(srv4), pfx(srv6))
	tb.vm = tb.lan.AddHost(t, "vm", pfx(vm4), pfx(vm6))
	tb.a = tb.lan.AddHost(t, "ca", pfx(a4), pfx(a6))
	tb.b = tb.lan.AddHost(t, "cb", pfx(b4), pfx(b6))
	tb.listen()

	tb.serverAddr = netip.AddrPortFrom(srv4, 8443).String()
	tb.srv = ajardtest.Start(t, ajardtest.Options{
		Listen: tb.serverAddr,
		Args:   []string{"--tls=auto", "--tls-hosts", srv4.String()},
		Wrap:   []string{"ip", "netns", "exec", tb.srvNS.Name()},
		Dial:   dialer(tb.srvNS, 5*time.Second),
	})
	ctx := context.Background()
	adm := tb.srv.Admin
	must(t, func() error { _, err := adm.CreateGroup(ctx, "lab"); return err }())
	token := func(user, role string) string {
		_, err := adm.CreateUser(ctx, jit.NewUser{Name: user})
		must(t, err)
		_, err = adm.CreateRoleBinding(ctx, user, role, "lab")
		must(t, err)
		tk, err := adm.CreateToken(ctx, jit.NewToken{User: user, Name: "e2e"})
		must(t, err)
		return tk.Secret
	}
	tb.alice = tb.srv.ClientVia(token("alice", jit.RoleRequesterAnySource), dialer(tb.a, 5*time.Second))
	tb.bob = tb.srv.ClientVia(token("bob", jit.RoleRequester), dialer(tb.b, 5*time.Second))

	// Enroll the VM's agent with an enrollment token, pinning the server's
	// self-signed certificate.
	et, err := adm.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "lab", TTL: "PT10M", Uses: 1})
	must(t, err)
	tb.stateDir = filepath.Join(t.TempDir(), "agent-state")
	out, err := tb.vm.TryRun(ajardtest.Binary(t, "ajar-agent"), "enroll", "--server", "https://"+tb.serverAddr,
		"--token", et.Secret, "--ca-fingerprint", tb.srv.Fingerprint(), "--name", "vm1", "--state-dir", tb.stateDir)
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(tb.stateDir, "agent.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent credential: %v %v, want mode 0600", fi, err)
	}
	vms, err := adm.ListVMs(ctx, "lab", "", "vm1")
	must(t, err)
	if len(vms) != 1 {
		t.Fatalf("enrolled VM not listed: %+v", vms)
	}
	tb.vmID = vms[0].ID
	tb.startAgent()
	tb.eventually("agent reports", 10*time.Second, func() bool {
		v, err := adm.GetVM(ctx, tb.vmID)
		return err == nil && v.Report != nil && v.Report.Enforceable
	})
	return tb
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listen starts TCP and UDP echo servers on the VM.
func (tb *testbed) listen() {
	t := tb.t
	for _, network := range []string{"tcp", "udp"} {
		for _, ip := range []netip.Addr{vm4, vm6} {
			addr := netip.AddrPortFrom(ip, uint16(tb.port)).String()
			must(t, tb.vm.Do(func() error {
				if network == "tcp" {
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						return err
					}
					t.Cleanup(func() { ln.Close() })
					go func() {
						for {
							c, err := ln.Accept()
							if err != nil {
								return
							}
							go func() { defer c.Close(); io.Copy(c, c) }()
						}
					}()
					return nil
				}
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					return err
				}
				t.Cleanup(func() { pc.Close() })
				go func() {
					buf := make([]byte, 1500)
					for {
						n, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						pc.WriteTo(buf[:n], from)
					}
				}()
				return nil
			}))
		}
	}
}

func (tb *testbed) startAgent() {
	tb.agentLog = &lockedBuffer{}
	cmd := tb.vm.Command(context.Background(), ajardtest.Binary(tb.t, "ajar-agent"), "run", "--state-dir", tb.stateDir, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = tb.agentLog, tb.agentLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(tb.t, cmd.Start())
	tb.agent = cmd
	exited := make(chan struct{})
	tb.agentExited = exited
	go func() { cmd.Wait(); close(exited) }()
	tb.t.Cleanup(tb.killAgent)
}

func (tb *testbed) killAgent() {
	if tb.agent == nil {
		return
	}
	syscall.Kill(-tb.agent.Process.Pid, syscall.SIGKILL)
	<-tb.agentExited
	tb.agent = nil
}

// tcpOpen reports whether a new TCP connection from ns reaches the VM.
func (tb *testbed) tcpOpen(ns *netns.NS, dst netip.Addr) bool {
	c, err := dialer(ns, 300*time.Millisecond)(context.Background(), "tcp", netip.AddrPortFrom(dst, uint16(tb.port)).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// udpOpen reports whether a datagram from ns gets echoed by the VM.
func (tb *testbed) udpOpen(ns *netns.NS, dst netip.Addr) bool {
	c, err := dialer(ns, time.Second)(context.Background(), "udp", netip.AddrPortFrom(dst, uint16(tb.port)).String())
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "ping"
}

func (tb *testbed) eventually(what string, within time.Duration, cond func() bool) time.Duration {
	tb.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			tb.t.Fatalf("%s: not within %v\nagent log:\n%s", what, within, tb.agentLogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (tb *testbed) agentLogTail() string {
	if tb.agentLog == nil {
		return ""
	}
	s := tb.agentLog.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// echo checks that an open connection still carries data.
func echo(c net.Conn) error {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

func (tb *testbed) setPolicy(closeConns bool) {
	_, err := tb.srv.Admin.PutPolicy(context.Background(), tb.vmID, jit.Policy{
		Ports:                    []jit.PortRule{{Number: tb.port, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}},
		CloseConnectionsOnExpiry: closeConns,
	})
	must(tb.t, err)
}

func (tb *testbed) request(c *client.Client, proto, source, duration string) jit.Grant {
	tb.t.Helper()
	r, err := c.RequestAccess(context.Background(), jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: tb.vmID,
		Ports: []jit.PortRequest{{Number: tb.port, Protocol: proto, AllowedSourceAddressPrefix: source, Duration: duration}}}}})
	must(tb.t, err)
	return r.Grants[0]
}

func TestAgentEndToEnd(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()

	if !tb.tcpOpen(tb.a, vm4) || !tb.tcpOpen(tb.b, vm4) {
		t.Fatal("port not reachable before JIT")
	}

	tb.setPolicy(false)
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	if tb.tcpOpen(tb.b, vm4) || tb.udpOpen(tb.a, vm4) || tb.tcpOpen(tb.a, vm6) {
		t.Fatal("locked port reachable")
	}

	// A requests with its own address (the server sees A's address).
	g := tb.request(tb.alice, "TCP", "", "PT4S")
	if g.Source != a4.String()+"/32" {
		t.Fatalf("grant source = %s, want A's address", g.Source)
	}
	d := tb.eventually("A connects after the grant", 3*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	t.Logf("request-to-open: %v", d)
	if tb.tcpOpen(tb.b, vm4) {
		t.Fatal("B connects with A's grant")
	}
	held, err := dialer(tb.a, time.Second)(ctx, "tcp", netip.AddrPortFrom(vm4, uint16(tb.port)).String())
	must(t, err)
	defer held.Close()
	tb.eventually("grant expires", 8*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	if err := echo(held); err != nil {
		t.Fatalf("connection opened before expiry broke: %v", err)
	}

	// Revoke closes early.
	g = tb.request(tb.alice, "TCP", "", "PT1H")
	tb.eventually("A connects", 3*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	_, err = tb.alice.Revoke(ctx, g.ID)
	must(t, err)
	tb.eventually("revoke closes", 3*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })

	// IPv6.
	g = tb.request(tb.alice, "TCP", a6.String(), "PT1H")
	tb.eventually("A connects over IPv6", 3*time.Second, func() bool { return tb.tcpOpen(tb.a, vm6) })
	if tb.tcpOpen(tb.b, vm6) {
		t.Fatal("B connects over IPv6 with A's grant")
	}
	_, err = tb.alice.Revoke(ctx, g.ID)
	must(t, err)
	tb.eventually("IPv6 revoke closes", 3*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm6) })

	// UDP.
	g = tb.request(tb.alice, "UDP", "", "PT1H")
	tb.eventually("A's UDP gets through", 3*time.Second, func() bool { return tb.udpOpen(tb.a, vm4) })
	if tb.udpOpen(tb.b, vm4) || tb.tcpOpen(tb.a, vm4) {
		t.Fatal("UDP grant opened more than A's UDP")
	}
	_, err = tb.alice.Revoke(ctx, g.ID)
	must(t, err)
	tb.eventually("UDP revoke closes", 3*time.Second, func() bool { return !tb.udpOpen(tb.a, vm4) })

	// Agent and server killed mid-grant: the kernel still ends it on time.
	g = tb.request(tb.alice, "TCP", "", "PT5S")
	tb.eventually("A connects", 3*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	tb.killAgent()
	tb.srv.Kill()
	if !tb.tcpOpen(tb.a, vm4) {
		t.Fatal("grant closed when the agent died")
	}
	until := time.Until(g.EndTime)
	closed := tb.eventually("kernel ends the grant with agent and server dead", until+3*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	t.Logf("grant ended %v after its end time (agent and server dead)", closed-until)
	if closed < until-time.Second {
		t.Fatalf("grant closed %v early", until-closed)
	}

	// Agent restarted with the server down applies the lock from its cache.
	tb.vm.Run(t, "nft", "delete", "table", "inet", "ajar")
	if !tb.tcpOpen(tb.a, vm4) {
		t.Fatal("port still closed after deleting the table")
	}
	tb.startAgent()
	tb.eventually("cached lock applied with the server down", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })

	// Server back; the table deleted by hand is restored and the drift is
	// in the activity log.
	tb.srv.Restart("ip", "netns", "exec", tb.srvNS.Name())
	tb.alice = tb.srv.ClientVia(tb.alice.Token, dialer(tb.a, 5*time.Second))
	tb.vm.Run(t, "nft", "delete", "table", "inet", "ajar")
	tb.eventually("table restored", 5*time.Second, func() bool {
		_, err := tb.vm.TryRun("nft", "list", "table", "inet", "ajar")
		return err == nil
	})
	if tb.tcpOpen(tb.a, vm4) {
		t.Fatal("lock not restored")
	}
	tb.eventually("drift in the activity log", 10*time.Second, func() bool {
		ev, err := tb.srv.Admin.ListEvents(ctx, client.EventQuery{VM: tb.vmID, Operation: jit.OpDriftDetect})
		return err == nil && len(ev) > 0
	})

	// closeConnectionsOnExpiry cuts the established connection.
	tb.setPolicy(true)
	g = tb.request(tb.alice, "TCP", "", "PT3S")
	tb.eventually("A connects", 5*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	conn, err := dialer(tb.a, time.Second)(ctx, "tcp", netip.AddrPortFrom(vm4, uint16(tb.port)).String())
	must(t, err)
	defer conn.Close()
	must(t, echo(conn))
	tb.eventually("established connection cut at expiry", 10*time.Second, func() bool { return echo(conn) != nil })

	v, err := tb.srv.Admin.Verify(ctx)
	must(t, err)
	if !v.OK {
		t.Fatalf("activity log does not verify: %+v", v)
	}
	// The applied revision rides on the agent's next poll and is written
	// with other reports within about a second.
	var vm jit.VMView
	tb.eventually("the applied revision stored", 3*time.Second, func() bool {
		vm, err = tb.srv.Admin.GetVM(ctx, tb.vmID)
		return err == nil && vm.Report != nil && vm.Report.AppliedRevision == vm.Revision
	})
	if vm.Classification.JIT != jit.JITConfigured {
		t.Fatalf("VM after the story: classification %+v, applied %+v, revision %d", vm.Classification, vm.Report, vm.Revision)
	}
}

// TestAgentReportsSockets checks classification and recommendations come
// from what the agent reports.
func TestAgentReportsSockets(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	// Listen on 22 in the VM so the agent reports a management port.
	must(t, tb.vm.Do(func() error {
		ln, err := net.Listen("tcp", "0.0.0.0:22")
		if err == nil {
			t.Cleanup(func() { ln.Close() })
		}
		return err
	}))
	tb.killAgent()
	tb.startAgent()
	tb.eventually("agent reports port 22", 10*time.Second, func() bool {
		rec, err := tb.srv.Admin.Recommend(ctx, tb.vmID)
		return err == nil && len(rec.Exposed) > 0 && rec.Classification.Health == jit.Unhealthy
	})
	rec, err := tb.srv.Admin.Recommend(ctx, tb.vmID)
	must(t, err)
	if len(rec.Ports) != 1 || rec.Ports[0].Number != 22 {
		t.Fatalf("recommended ports = %+v, want 22", rec.Ports)
	}
	status, err := tb.vm.TryRun(ajardtest.Binary(t, "ajar-agent"), "status", "--state-dir", tb.stateDir)
	if err != nil || !strings.Contains(status, `"vmId": "`+tb.vmID+`"`) || strings.Contains(status, "ajar_") {
		t.Fatalf("status: %v\n%s", err, status)
	}
	tb.killAgent()
	out, err := tb.vm.TryRun(ajardtest.Binary(t, "ajar-agent"), "uninstall", "--state-dir", tb.stateDir)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat(tb.stateDir); !os.IsNotExist(err) {
		t.Fatalf("state dir left after uninstall: %v", err)
	}
	_ = bufio.NewReader
	_ = fmt.Sprint
}

// TestAgentResyncsAfterServerRestart: ajard is down for eight seconds, long
// enough for the agent's retries to space out, and comes back; a grant
// requested right then opens the port within a couple of seconds. (With
// retries doubling from 1 s the agent came back 5-9 s after the server.)
func TestAgentResyncsAfterServerRestart(t *testing.T) {
	tb := newTestbed(t)
	tb.setPolicy(false)
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })

	tb.srv.Stop()
	time.Sleep(8 * time.Second)
	tb.srv.Restart("ip", "netns", "exec", tb.srvNS.Name())
	back := time.Now()
	tb.alice = tb.srv.ClientVia(tb.alice.Token, dialer(tb.a, 5*time.Second))
	tb.request(tb.alice, "TCP", "", "PT5M")
	tb.eventually("a grant requested after the restart opens the port", 15*time.Second, func() bool { return tb.tcpOpen(tb.a, vm4) })
	took := time.Since(back)
	t.Logf("port open %v after ajard was back", took)
	// About a second for the agent's next retry, plus the request and the
	// apply; the old backoff's next retry was 4-7 s away.
	if took > 2500*time.Millisecond {
		t.Fatalf("port open %v after ajard was back, want within 2.5 s\nagent log:\n%s", took, tb.agentLogTail())
	}
}

// TestAgentCutsChattySessionAtExpiry: with closeConnectionsOnExpiry, a
// session in which the VM and the client both write every 250 ms is cut
// when its grant ends and stays cut.
func TestAgentCutsChattySessionAtExpiry(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	const port = 2223
	accepted := tb.vm.ServeChat(t, netip.AddrPortFrom(vm4, port).String())
	_, err := tb.srv.Admin.PutPolicy(ctx, tb.vmID, jit.Policy{
		Ports:                    []jit.PortRule{{Number: port, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}},
		CloseConnectionsOnExpiry: true,
	})
	must(t, err)
	addr := netip.AddrPortFrom(vm4, port).String()
	open := func() bool {
		c, err := dialer(tb.a, 300*time.Millisecond)(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !open() })
	for len(accepted) > 0 { // the probes' connections
		<-accepted
	}

	r, err := tb.alice.RequestAccess(ctx, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: tb.vmID,
		Ports: []jit.PortRequest{{Number: port, Protocol: "TCP", Duration: "PT3S"}}}}})
	must(t, err)
	var c net.Conn
	tb.eventually("A connects during the grant", 3*time.Second, func() bool {
		c, err = dialer(tb.a, 300*time.Millisecond)(ctx, "tcp", addr)
		return err == nil
	})
	client := netns.Chat(t, c)
	var vm *netns.Chatter
	select {
	case vm = <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("VM did not accept the connection")
	}
	tb.eventually("the session carries data both ways", 2*time.Second, func() bool {
		return client.Received.Load() > 0 && vm.Received.Load() > 0
	})
	// The agent cuts within its check interval (a second) of the end.
	time.Sleep(time.Until(r.Grants[0].EndTime) + 2*time.Second)
	if quiet, got := netns.Quiet(12*netns.TickEvery, client, vm); !quiet {
		t.Fatalf("bytes received after the grant ended: %d by the client, %d by the VM\nagent log:\n%s", got[0], got[1], tb.agentLogTail())
	}
}

// TestAgentExpiriesAreNoDrift: twenty grants of one to three seconds,
// requested a tenth of a second apart, end on their own; none of the
// endings shows in the activity log as drift, and a grant element added by
// hand afterwards does.
func TestAgentExpiriesAreNoDrift(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	tb.setPolicy(false)
	tb.eventually("lock closes the port", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	var last time.Time
	for i := range 20 {
		g := tb.request(tb.alice, "TCP", fmt.Sprintf("198.51.100.%d", 100+i), fmt.Sprintf("PT%dS", 1+i%3))
		if g.EndTime.After(last) {
			last = g.EndTime
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Until(last) + 3*time.Second)
	drift := func() []jit.Event {
		ev, err := tb.srv.Admin.ListEvents(ctx, client.EventQuery{VM: tb.vmID, Operation: jit.OpDriftDetect})
		must(t, err)
		return ev
	}
	if ev := drift(); len(ev) > 0 {
		t.Fatalf("%d drift events over 20 ordinary expiries, first: %s\nagent log:\n%s", len(ev), ev[0].Details, tb.agentLogTail())
	}
	tb.vm.Run(t, "nft", "add", "element", "inet", "ajar", "grant4_tcp", "{ 198.51.100.99 . 2222 timeout 1h }")
	tb.eventually("an injected element is drift in the activity log", 10*time.Second, func() bool { return len(drift()) > 0 })
}
