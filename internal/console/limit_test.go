package console

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLimiter(3, 15*time.Minute, func() time.Time { return now })
	step := func(d time.Duration) { now = now.Add(d) }

	for i := range 3 {
		if b, _ := l.blocked("u"); b {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail("u")
		step(time.Minute)
	}
	b, until := l.blocked("u")
	if !b || !until.Equal(time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC)) {
		t.Fatalf("after 3 failures: blocked=%v until %v, want blocked until the first failure leaves the window", b, until)
	}
	if b, _ := l.blocked("v"); b {
		t.Fatal("another key is blocked")
	}
	step(12 * time.Minute) // the first failure is 15 minutes old
	if b, _ := l.blocked("u"); b {
		t.Fatal("still blocked once the oldest failure left the window")
	}
	l.fail("u")
	if b, _ := l.blocked("u"); !b {
		t.Fatal("not blocked with 3 failures inside the window")
	}
	l.reset("u")
	if b, _ := l.blocked("u"); b {
		t.Fatal("blocked after reset")
	}
	step(time.Hour)
	l.fail("w")
	if _, ok := l.failures["u"]; ok {
		t.Error("reset key kept")
	}
	if b, _ := l.blocked("w"); b {
		t.Fatal("blocked after one failure")
	}
	step(16 * time.Minute)
	l.blocked("w")
	if len(l.failures) != 0 {
		t.Errorf("expired keys kept: %v", l.failures)
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
