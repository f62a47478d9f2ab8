package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// TestWatchKeepsAgentState: an agent's long polls that find nothing new
// read nothing from the database, yet their answers count the grants'
// time down; a change is read and answered at once.
func TestWatchKeepsAgentState(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &countingStore{Store: db}
	clk := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	ctl := control.New(st, log, clk.now)
	hubCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { ctl.RunWatchHub(hubCtx) })
	secret, err := ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ctl.Authenticate(ctx, secret, netip.MustParseAddr("198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateGroup(ctx, admin, "prod"); err != nil {
		t.Fatal(err)
	}
	e := enroll(t, ctl, admin, "web-1")
	agent, err := ctl.Authenticate(ctx, e.Secret, netip.MustParseAddr("198.51.100.10"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.PutPolicy(ctx, admin, e.VM.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	bob := actor(t, ctl, admin, "bob", jit.RoleRequester, "prod", "198.51.100.8")
	if _, err := ctl.RequestAccess(ctx, bob, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: e.VM.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}}); err != nil {
		t.Fatal(err)
	}

	first, err := ctl.WatchDesiredState(ctx, agent, e.VM.ID, -1, 0)
	if err != nil || len(first.Grants) != 1 || first.Grants[0].RemainingSeconds != 3600 {
		t.Fatalf("first state: %+v %v", first, err)
	}
	// The hub hears of the changes above asynchronously, and forgets the
	// kept state when it does: poll until a poll reads nothing.
	for i := 0; ; i++ {
		views := st.views.Load()
		if _, err := ctl.WatchDesiredState(ctx, agent, e.VM.ID, first.Revision, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if st.views.Load() == views {
			break
		}
		if i == 100 {
			t.Fatal("every long poll reads the database")
		}
		time.Sleep(10 * time.Millisecond)
	}
	views := st.views.Load()
	for i := range 5 {
		clk.add(10 * time.Second)
		got, err := ctl.WatchDesiredState(ctx, agent, e.VM.ID, first.Revision, time.Millisecond)
		if err != nil || got.Revision != first.Revision || len(got.Grants) != 1 || got.Grants[0].RemainingSeconds != 3600-10*int64(i+1) || !got.ServerTime.Equal(clk.now()) {
			t.Fatalf("unchanged state after %d s: %+v %v", 10*(i+1), got, err)
		}
	}
	if n := st.views.Load() - views; n != 0 {
		t.Errorf("5 long polls without a change read the database %d times, want 0", n)
	}

	// A change is answered at once, read anew.
	done := make(chan jit.DesiredState, 1)
	go func() {
		got, err := ctl.WatchDesiredState(ctx, agent, e.VM.ID, first.Revision, time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	time.Sleep(20 * time.Millisecond) // the watch is waiting
	if _, err := ctl.PutPolicy(ctx, admin, e.VM.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}, {Number: 2222, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got.Revision <= first.Revision || len(got.Lock) != 2 {
			t.Fatalf("state after the policy change: %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change did not reach the watch within 10 s")
	}
	// A long poll by someone else than the agent is read from the database.
	views = st.views.Load()
	if _, err := ctl.WatchDesiredState(ctx, admin, e.VM.ID, -1, 0); err != nil {
		t.Fatal(err)
	}
	if st.views.Load() == views {
		t.Error("an admin's watch was answered without reading the database")
	}
}
