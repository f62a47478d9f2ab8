package apitest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
)

// Memory bounds of ajard with default flags (peak resident set, which
// bounds the heap), as SECURITY.md ("Limits") states them: under
// strangers' abuse, and under a no-role user's on top.
const (
	StrangerBound = 384 << 20
	MemoryBound   = 512 << 20
)

// vmHWM returns ajard's peak resident set size, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("cannot read ajard's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// TestMemoryBound drives, against one ajard with default flags, the abuse
// that used to grow it without bound, from strangers (connections held
// with huge unfinished headers, made-up 256 KiB methods, trickling and
// oversized sign-in forms) and from a signed-in user with no role (1 MiB
// API, Azure API and console bodies, many at once), and checks that its
// peak memory stays under MemoryBound. Everything is bounded in count
// and time, on loopback.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("drives about a minute of abuse")
	}
	s := ajardtest.Start(t, ajardtest.Options{})
	pid := s.Cmd.Process.Pid
	addr := strings.TrimPrefix(s.URL, "http://")
	tok := user(t, s, "mallory")
	cookie := consoleUser(t, s, "eve")
	base := vmHWM(t, pid)

	var wg sync.WaitGroup
	// send writes head and then body (at most every 100 ms a chunk of
	// chunk bytes when chunk > 0), reads what comes back, and closes; the
	// connection lives at most 45 s.
	send := func(head string, body []byte, chunk int) {
		conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(45 * time.Second))
		if _, err := conn.Write([]byte(head)); err != nil {
			return
		}
		for len(body) > 0 {
			n := len(body)
			if chunk > 0 {
				n = min(n, chunk)
			}
			if _, err := conn.Write(body[:n]); err != nil {
				return
			}
			body = body[n:]
			if chunk > 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			resp.Body.Close()
		}
	}
	spawn := func(n int, f func()) {
		for range n {
			wg.Go(f)
		}
	}

	// Strangers.
	pad := strings.Repeat("p", 60<<10)
	spawn(1000, func() { send("GET /api/v1/vms HTTP/1.1\r\nHost: ajar\r\nX-Pad: "+pad, nil, 0) }) // never finished
	spawn(20, func() { send(strings.Repeat("M", 256<<10)+" / HTTP/1.1\r\nHost: ajar\r\n\r\n", nil, 0) })
	form := []byte("user=x&password=" + strings.Repeat("y", 10<<20))
	spawn(20, func() {
		send("POST /signin HTTP/1.1\r\nHost: ajar\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+strconv.Itoa(len(form))+"\r\n\r\n", form, 0)
	})
	spawn(50, func() {
		send("POST /signin HTTP/1.1\r\nHost: ajar\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n", bytes.Repeat([]byte("a"), 16000), 200)
	})
	wg.Wait()
	strangers := vmHWM(t, pid)

	// A user with a token and a console session, and no role.
	big := []byte(`{"virtualMachines":[{"id":"x","ports":[{"number":22}]}],"justification":"` + strings.Repeat("j", 1<<20-200) + `"}`)
	apiHead := "POST /api/v1/requests HTTP/1.1\r\nHost: ajar\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n"
	azHead := "PUT /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/p?api-version=2020-01-01 HTTP/1.1\r\nHost: ajar\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n"
	cform := []byte("port=22&sources=" + strings.Repeat("s", 1<<20-100))
	consoleHead := "POST /machines/x/policy HTTP/1.1\r\nHost: ajar\r\nCookie: " + cookie + "\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(cform)) + "\r\n\r\n"
	for range 3 {
		spawn(100, func() { send(apiHead, big, 0) })
		spawn(30, func() { send(azHead, big, 0) })
		spawn(50, func() { send(consoleHead, cform, 0) })
		spawn(30, func() { send(apiHead, big, 64<<10) }) // trickled
	}
	wg.Wait()

	if err := s.Admin.Health(t.Context()); err != nil {
		t.Fatalf("health after the abuse: %v", err)
	}
	peak := vmHWM(t, pid)
	t.Logf("ajard peak memory: %d MiB at start, %d MiB after strangers' abuse (bound %d MiB), %d MiB after a no-role user's (bound %d MiB)",
		base>>20, strangers>>20, StrangerBound>>20, peak>>20, MemoryBound>>20)
	if strangers > StrangerBound {
		t.Errorf("strangers drove ajard to %d MiB, over the bound of %d MiB", strangers>>20, StrangerBound>>20)
	}
	if peak > MemoryBound {
		t.Errorf("ajard reached %d MiB, over the bound of %d MiB", peak>>20, MemoryBound>>20)
	}
}
