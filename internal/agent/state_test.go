package agent

import (
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

func TestHeldCountsDownAndNeverStretches(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	server := t0.Add(-3 * time.Hour) // the host clock is 3 hours ahead: irrelevant
	st := jit.DesiredState{Revision: 7, Lock: []jit.PortLock{{Port: 22, Protocol: "TCP"}}, ServerTime: server,
		Grants: []jit.GrantRule{{ID: "a", Port: 22, Protocol: "TCP", Source: "198.51.100.7/32", EndTime: server.Add(9800 * time.Millisecond), RemainingSeconds: 10}}}
	h := hold(st, t0)
	if g := h.at(t0.Add(2600 * time.Millisecond)).Grants; len(g) != 1 || g[0].RemainingSeconds != 7 {
		t.Fatalf("2.6 s later: %+v, want 7 s left (7.2 to the nearest second)", g)
	}
	if g := h.at(t0.Add(9400 * time.Millisecond)).Grants; len(g) != 1 || g[0].RemainingSeconds != 0 {
		t.Fatalf("0.4 s left: %+v, want the grant with 0 s left (ended; its element may linger)", g)
	}
	if g := h.at(t0.Add(11200 * time.Millisecond)).Grants; len(g) != 1 || g[0].RemainingSeconds != 0 {
		t.Fatalf("1.4 s past the end: %+v, want the grant with 0 s left", g)
	}
	if g := h.at(t0.Add(11400 * time.Millisecond)).Grants; len(g) != 0 {
		t.Fatalf("1.6 s past the end: %+v, want the grant left out", g)
	}
	if g := h.at(t0.Add(-time.Hour)).Grants; len(g) != 1 || g[0].RemainingSeconds != 10 {
		t.Fatalf("clock moved back: %+v, want at most the 10 s the server sent", g)
	}
}

func TestCacheDropsGrantsWhenTheClockWentBack(t *testing.T) {
	dir := t.TempDir()
	st := jit.DesiredState{Revision: 3, Lock: []jit.PortLock{{Port: 22, Protocol: "TCP"}},
		Grants: []jit.GrantRule{{ID: "a", Port: 22, Protocol: "TCP", Source: "198.51.100.7/32", RemainingSeconds: 3600}}}
	for _, tc := range []struct {
		name       string
		received   time.Time
		wantGrants int
	}{
		{"clock sane", time.Now().Add(-time.Minute), 1},
		{"clock behind the arrival time", time.Now().Add(time.Hour), 0},
	} {
		if err := writeFile(dir, cacheFile, hold(st, tc.received)); err != nil {
			t.Fatal(err)
		}
		h, ok, err := loadCache(dir)
		if err != nil || !ok {
			t.Fatalf("%s: load: %v %v", tc.name, ok, err)
		}
		if len(h.State.Lock) != 1 || len(h.State.Grants) != tc.wantGrants {
			t.Fatalf("%s: lock %v, %d grants, want the lock and %d grants", tc.name, h.State.Lock, len(h.State.Grants), tc.wantGrants)
		}
	}
}
