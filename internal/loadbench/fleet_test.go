package loadbench_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/loadbench"
)

// BenchmarkFleet connects fake agents (10,000 unless AJAR_BENCH_AGENTS
// says otherwise) to one ajard on SQLite over TLS, each with its own
// client and long poll (which carries its report), and reports: ajard's open file
// descriptors per agent, its resident memory and CPU while the fleet idles
// (AJAR_BENCH_IDLE, default 60s), how long after the API's answer one VM's
// change reaches its agent (200 changes: p50, p99), and how long after the
// answer a transaction touching every VM (deleting a user with a grant on
// each) reaches all agents. Every failed call of an agent is an error.
// Run: go test -run XXX -bench Fleet -benchtime 1x -timeout 30m ./internal/loadbench/
func BenchmarkFleet(b *testing.B) {
	n := envInt(b, "AJAR_BENCH_AGENTS", 10000)
	idle := 60 * time.Second
	if v := os.Getenv("AJAR_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("AJAR_BENCH_IDLE: %v", err)
		}
		idle = d
	}
	// AJAR_BENCH_GOMEMLIMIT sets ajard's GOMEMLIMIT (the Go runtime's
	// soft memory limit), to measure what it trades for RSS.
	var env []string
	if v := os.Getenv("AJAR_BENCH_GOMEMLIMIT"); v != "" {
		env = append(env, "GOMEMLIMIT="+v)
	}
	s := ajardtest.Start(b, ajardtest.Options{Args: []string{"--log-level", "warn", "--tls", "auto", "--max-conns", strconv.Itoa(n + 1000)}, Env: env})
	pid := s.Cmd.Process.Pid
	ctx := context.Background()
	baseFDs := countFDs(b, pid)

	t0 := time.Now()
	fleet, err := loadbench.Enroll(ctx, s.Admin, s.URL, s.Fingerprint(), "fleet", n)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i, a := range fleet.Agents {
		ids[i] = a.VMID
	}
	parallel(b, n, func(i int) error {
		_, err := s.Admin.PutPolicy(ctx, ids[i], jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}})
		return err
	})
	b.Logf("%d agents enrolled, their VMs given a policy in %v", n, time.Since(t0).Round(time.Millisecond))

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	t0 = time.Now()
	wg.Go(func() { fleet.Run(runCtx, 10*time.Second) })
	if err := fleet.Connected(ctx, 5*time.Minute); err != nil {
		nerr, first := fleet.Errors()
		b.Fatalf("%v (%d failed calls; first: %v); ajard has %d open files; its log ends:\n%s", err, nerr, first, countFDs(b, pid), tail(s.Log.String(), 4000))
	}
	b.Logf("all %d agents had their first desired state %v after the first started (10 s ramp)", n, time.Since(t0).Round(time.Millisecond))
	time.Sleep(5 * time.Second) // the first heartbeats land

	fds := countFDs(b, pid) - baseFDs
	cpu0, w0 := cpuTicks(b, pid), time.Now()
	time.Sleep(idle)
	cpu := float64(cpuTicks(b, pid)-cpu0) / 100 / time.Since(w0).Seconds()
	rss := procStatus(b, pid, "VmRSS:")
	b.Logf("idle: %d agents, %d more open fds (%.2f per agent), RSS %.0f MiB, CPU %.1f %% of a core over %v",
		n, fds, float64(fds)/float64(n), float64(rss)/1024, 100*cpu, idle)

	// One VM's change at a time.
	if _, err := s.Admin.CreateUser(ctx, jit.NewUser{Name: "one"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Admin.CreateRoleBinding(ctx, "one", jit.RoleRequesterAnySource, "fleet"); err != nil {
		b.Fatal(err)
	}
	tk, err := s.Admin.CreateToken(ctx, jit.NewToken{User: "one", Name: "one"})
	if err != nil {
		b.Fatal(err)
	}
	one := s.Client(tk.Secret)
	var lat []time.Duration
	for k := range 200 {
		a := fleet.Agents[rand.IntN(n)]
		before, _ := a.Revision()
		_, err := one.RequestAccess(ctx, jit.AccessRequest{Justification: "bench", VirtualMachines: []jit.VMRequest{{ID: a.VMID,
			Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: fmt.Sprintf("2001:db8:1::%x", k+1), Duration: "PT1H"}}}}})
		answered := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		for deadline := answered.Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			rev, at := a.Revision()
			if rev > before {
				lat = append(lat, max(0, at.Sub(answered)))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("agent of VM %s did not receive its change within 10 s", a.VMID)
			}
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	b.Logf("one VM's change, API answer to its agent: p50 %v, p99 %v, max %v (%d changes)", pct(0.5), pct(0.99), lat[len(lat)-1], len(lat))

	// One transaction that changes every VM: a user with a grant on each is
	// deleted.
	if _, err := s.Admin.CreateUser(ctx, jit.NewUser{Name: "wide"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Admin.CreateRoleBinding(ctx, "wide", jit.RoleRequesterAnySource, "fleet"); err != nil {
		b.Fatal(err)
	}
	tk, err = s.Admin.CreateToken(ctx, jit.NewToken{User: "wide", Name: "wide"})
	if err != nil {
		b.Fatal(err)
	}
	wide := s.Client(tk.Secret)
	parallel(b, (n+99)/100, func(k int) error {
		var vms []jit.VMRequest
		for _, id := range ids[k*100 : min(n, k*100+100)] {
			vms = append(vms, jit.VMRequest{ID: id, Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "2001:db8:2::1", Duration: "PT1H"}}})
		}
		_, err := wide.RequestAccess(ctx, jit.AccessRequest{Justification: "bench", VirtualMachines: vms})
		return err
	})
	time.Sleep(5 * time.Second) // the grants' changes reach the agents and their reports land
	before := fleet.Revisions()
	t0 = time.Now()
	if err := s.Admin.DeleteUser(ctx, "wide"); err != nil {
		b.Fatal(err)
	}
	answered := time.Now()
	last, err := fleet.WaitPast(ctx, before, 2*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	all := last.Sub(answered)
	b.Logf("a change of all %d VMs in one transaction (%v to commit) reached every agent %v after the API's answer", n, answered.Sub(t0).Round(time.Millisecond), all.Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	hwm := procStatus(b, pid, "VmHWM:")
	b.Logf("peak RSS %.0f MiB", float64(hwm)/1024)

	nerr, first := fleet.Errors()
	b.ReportMetric(float64(n), "agents")
	b.ReportMetric(float64(fds)/float64(n), "fds/agent")
	b.ReportMetric(float64(rss)/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
	b.ReportMetric(100*cpu, "idle-CPU-%")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "one-p99-ms")
	b.ReportMetric(float64(all.Milliseconds()), "all-ms")
	b.ReportMetric(float64(nerr), "errors")
	if nerr > 0 {
		b.Errorf("%d calls of agents failed; first: %v", nerr, first)
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// parallel runs fn(0..n-1) on 32 workers and fails b at the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var mu sync.Mutex
	var first error
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s must be a positive number, got %q", name, v)
	}
	return n
}

func countFDs(b testing.TB, pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(es)
}

// cpuTicks returns the process's user and system time in clock ticks
// (1/100 s on Linux).
func cpuTicks(b *testing.B, pid int) int64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// procStatus returns a kB field of /proc/PID/status.
func procStatus(b *testing.B, pid int, field string) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestFleetOneConnectionPerAgent: agents over TLS long-poll, their report
// carried by the poll, on one HTTP/1.1 connection each, so a server's file
// descriptors grow by one per agent.
func TestFleetOneConnectionPerAgent(t *testing.T) {
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--tls", "auto"}})
	ctx := t.Context()
	const n = 5
	fleet, err := loadbench.Enroll(ctx, s.Admin, s.URL, s.Fingerprint(), "fleet", n)
	if err != nil {
		t.Fatal(err)
	}
	s.Admin.HTTP.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	pid := s.Cmd.Process.Pid
	base := countFDs(t, pid)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { fleet.Run(runCtx, 0) })
	if err := fleet.Connected(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the long polls wait
	if got := countFDs(t, pid) - base; got != n {
		t.Errorf("%d agents hold %d connections, want %d", n, got, n)
	}
	if nerr, first := fleet.Errors(); nerr > 0 {
		t.Errorf("%d failed calls; first: %v", nerr, first)
	}
}
