package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// BenchmarkRequestToOpen measures, over the real network of the end-to-end
// test, the time from the API's 201 to the first TCP connection from the
// client's namespace that gets through (each attempt waits 2 ms for the
// handshake; a dropped SYN is retried at once). After each measurement the
// grant is revoked and the port checked closed again. At least 200 runs.
// Run (as root): go test -run XXX -bench RequestToOpen ./internal/agent/
func BenchmarkRequestToOpen(b *testing.B) {
	tb := newTestbed(b)
	ctx := context.Background()
	tb.setPolicy(false)
	tb.eventually("lock", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
	n := max(b.N, 200)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for range n {
		r, err := tb.alice.RequestAccess(ctx, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: tb.vmID,
			Ports: []jit.PortRequest{{Number: tb.port, Protocol: "TCP", Duration: "PT5M"}}}}})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		addr := netip.AddrPortFrom(vm4, uint16(tb.port)).String()
		for {
			c, err := dialer(tb.a, 2*time.Millisecond)(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Since(t0) > 5*time.Second {
				b.Fatalf("port not open 5s after the 201")
			}
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if _, err := tb.alice.Revoke(ctx, r.Grants[0].ID); err != nil {
			b.Fatal(err)
		}
		tb.eventually("closed after revoke", 5*time.Second, func() bool { return !tb.tcpOpen(tb.a, vm4) })
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.Logf("%d requests: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms", len(lat), pct(0.50), pct(0.95), pct(0.99), pct(1))
}

// BenchmarkAgentMemory reports the agent's resident memory while idle and
// with 10,000 active grants on its host, and how long the agent took to
// apply the state carrying them.
// Run (as root): go test -run XXX -bench AgentMemory -benchtime 1x ./internal/agent/
func BenchmarkAgentMemory(b *testing.B) {
	tb := newTestbed(b)
	ctx := context.Background()
	_, err := tb.srv.Admin.PutPolicy(ctx, tb.vmID, jit.Policy{Ports: []jit.PortRule{
		{Number: tb.port, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}}})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	idle := rssKiB(b, tb.agent.Process.Pid)

	// 10,000 grants: 157 requests of 64 ports-entries each, every entry its
	// own IPv6 source from 2001:db8::/32 (set elements, never contacted).
	const grants = 10000
	for i := 0; i < grants; i += 64 {
		var ports []jit.PortRequest
		for j := i; j < min(i+64, grants); j++ {
			ports = append(ports, jit.PortRequest{Number: tb.port, Protocol: "TCP",
				AllowedSourceAddressPrefix: fmt.Sprintf("2001:db8:%x:%x::1", 0x100+j>>16, j&0xffff), Duration: "PT30M"})
		}
		if _, err := tb.alice.RequestAccess(ctx, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: tb.vmID, Ports: ports}}}); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	var applied time.Duration
	tb.eventually("10,000 grants applied", 60*time.Second, func() bool {
		out, err := tb.vm.TryRun("nft", "list", "set", "inet", "ajar", "grant6_tcp")
		if err != nil {
			return false
		}
		if strings.Count(out, " . ") >= grants {
			applied = time.Since(t0)
			return true
		}
		return false
	})
	time.Sleep(2 * time.Second)
	loaded := rssKiB(b, tb.agent.Process.Pid)
	b.ReportMetric(float64(idle)/1024, "idle-MiB")
	b.ReportMetric(float64(loaded)/1024, "10k-grants-MiB")
	b.Logf("agent RSS: idle %.1f MiB, with %d grants %.1f MiB (all in the kernel within %v of the last 201)", float64(idle)/1024, grants, float64(loaded)/1024, applied)
}

func rssKiB(b *testing.B, pid int) int {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
