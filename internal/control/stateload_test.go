package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// TestAgentsWokenTogether: one change of every VM wakes every agent's long
// poll; while the database is slow to answer, their states are read
// together (far fewer transactions than agents) and each agent gets
// exactly its own VM's state.
func TestAgentsWokenTogether(t *testing.T) {
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
	defer stop()
	go ctl.RunWatchHub(hubCtx)
	secret, err := ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("198.51.100.7")
	admin, err := ctl.Authenticate(ctx, secret, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateGroup(ctx, admin, "prod"); err != nil {
		t.Fatal(err)
	}
	const n = 60
	en, err := ctl.CreateEnrollToken(ctx, admin, jit.NewEnrollToken{Group: "prod", Uses: n})
	if err != nil {
		t.Fatal(err)
	}
	enroller, err := ctl.Authenticate(ctx, en.Secret, addr)
	if err != nil {
		t.Fatal(err)
	}
	user := func(name string) *control.Actor {
		if _, err := ctl.CreateUser(ctx, admin, jit.NewUser{Name: name}); err != nil {
			t.Fatal(err)
		}
		if _, err := ctl.CreateRoleBinding(ctx, admin, jit.RoleBinding{User: name, Role: jit.RoleRequesterAnySource, Group: "prod"}); err != nil {
			t.Fatal(err)
		}
		tk, err := ctl.CreateToken(ctx, admin, jit.NewToken{User: name})
		if err != nil {
			t.Fatal(err)
		}
		a, err := ctl.Authenticate(ctx, tk.Secret, addr)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	bulk, keep := user("bulk"), user("keep")
	request := func(a *control.Actor, vmID, source string, port int) {
		if _, err := ctl.RequestAccessNow(ctx, a, jit.AccessRequest{Justification: "fix", VirtualMachines: []jit.VMRequest{{ID: vmID,
			Ports: []jit.PortRequest{{Number: port, AllowedSourceAddressPrefix: source, Duration: "PT1H"}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	agents := make([]*control.Actor, n)
	vms := make([]jit.VM, n)
	for i := range n {
		e, err := ctl.Enroll(ctx, enroller, jit.Enrollment{Name: fmt.Sprintf("web-%02d", i), OS: "linux", Addresses: []string{fmt.Sprintf("198.51.100.%d", 10+i)}})
		if err != nil {
			t.Fatal(err)
		}
		vms[i] = e.VM
		if agents[i], err = ctl.Authenticate(ctx, e.Secret, addr); err != nil {
			t.Fatal(err)
		}
		if _, err := ctl.PutPolicy(ctx, admin, e.VM.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22 + i%2, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		port := 22 + i%2
		request(bulk, vms[i].ID, fmt.Sprintf("203.0.113.%d", i), port)
		if i%3 == 0 {
			request(keep, vms[i].ID, fmt.Sprintf("192.0.2.%d", i), port)
		}
	}
	// Each agent is up to date and waits for its next change.
	revs := make([]int64, n)
	for i := range n {
		s, err := ctl.DesiredState(ctx, agents[i], vms[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		revs[i] = s.Revision
	}
	got := make([]jit.DesiredState, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = ctl.WatchDesiredState(ctx, agents[i], vms[i].ID, revs[i], time.Minute)
		})
	}
	time.Sleep(300 * time.Millisecond) // all waiting
	views := st.views.Load()
	// The database is slow to read (as under a fleet's load): the
	// reads begun first are held while the other agents wake up.
	gate := make(chan struct{})
	st.gate.Store(&gate)
	time.AfterFunc(500*time.Millisecond, func() { close(gate) })
	if err := ctl.DeleteUser(ctx, admin, "bulk"); err != nil { // one transaction: every VM changes
		t.Fatal(err)
	}
	wg.Wait()
	reads := st.views.Load() - views
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("agent %d: %v", i, errs[i])
		}
		want, err := ctl.DesiredState(ctx, admin, vms[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		want.ServerTime = got[i].ServerTime
		if d := cmp.Diff(want, got[i]); d != "" {
			t.Errorf("agent %d got another state than its VM's (-want +got):\n%s", i, d)
		}
		if w := map[bool]int{true: 1, false: 0}[i%3 == 0]; len(got[i].Grants) != w {
			t.Errorf("agent %d: %d grants, want %d (keep's)", i, len(got[i].Grants), w)
		}
	}
	t.Logf("%d agents woken by one change read their states in %d transactions", n, reads)
	if reads > 12 {
		t.Errorf("%d agents woken together read their states in %d transactions, want them read together (at most 12: four held, then batches)", n, reads)
	}
}
