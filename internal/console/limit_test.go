package console

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLimiter(3, 15*time.Minute, func() time.Time { return now })
	step := func(d time.Duration) { now = now.Add(d) }
	fail := func(key string) {
		t.Helper()
		if _, ok, _ := l.acquire(key); !ok {
			t.Fatalf("%s refused at %v", key, now)
		}
	}

	for range 3 {
		fail("u")
		step(time.Minute)
	}
	_, ok, retry := l.acquire("u")
	if ok || !retry.Equal(time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC)) {
		t.Fatalf("after 3 failures: ok=%v, retry at %v; want refused until the first failure leaves the window", ok, retry)
	}
	fail("v")              // another key is not limited
	step(12 * time.Minute) // the first failure is 15 minutes old
	fail("u")
	if _, ok, _ := l.acquire("u"); ok {
		t.Fatal("not refused with 3 failures inside the window")
	}
	l.reset("u")
	fail("u")

	// An attempt that did not fail is taken back.
	at, ok, _ := l.acquire("w")
	if !ok {
		t.Fatal("w refused")
	}
	fail("w")
	l.release("w", at)
	fail("w")
	fail("w") // three failures: the released attempt does not count
	if _, ok, _ := l.acquire("w"); ok {
		t.Fatal("w allowed a fourth failure")
	}

	step(16 * time.Minute)
	for _, k := range []string{"u", "v", "w"} {
		fail(k)
		l.reset(k)
	}
	if len(l.failures) != 0 {
		t.Errorf("keys kept after reset: %v", l.failures)
	}
}

// TestLimiterParallel checks that parallel attempts cannot get past the
// limit between the check and the count.
func TestLimiterParallel(t *testing.T) {
	l := newLimiter(5, time.Minute, time.Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 50 {
		wg.Go(func() {
			if _, ok, _ := l.acquire("k"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Errorf("%d of 50 parallel attempts allowed, want 5", allowed)
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":             "192.0.2.7",
		"::ffff:192.0.2.7":      "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::99": "2001:db8:1:2::/64",
	} {
		if got := addrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("addrKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/machines/x?tab=1":    "/machines/x?tab=1",
		"":                     "/d",
		"//evil.example/":      "/d",
		"/\\evil.example":      "/d",
		"https://evil.example": "/d",
		"machines":             "/d",
	} {
		if got := localPath(in, "/d"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
