package server_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// TestLongPollOutlastsBusyStore: an agent's long poll whose wait runs out
// while its read of the desired state is still queued for a busy database
// answers that state, never an error (it used to answer 500 "internal").
func TestLongPollOutlastsBusyStore(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctl := control.New(db, log, time.Now)
	const token = "ajar_test-admin-token-0123456789"
	if _, err := ctl.Bootstrap(ctx, token); err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopHub(); wg.Wait() }()
	wg.Go(func() { ctl.RunWatchHub(hubCtx) })
	api := server.New(ctl, log, nil)
	api.LongPoll = 300 * time.Millisecond
	srv := httptest.NewServer(api)
	defer srv.Close()

	admin, err := client.New(srv.URL, token, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	tk, err := admin.CreateEnrollToken(ctx, jit.NewEnrollToken{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	enroller, _ := client.New(srv.URL, tk.Secret, client.Options{})
	e, err := enroller.Enroll(ctx, jit.Enrollment{Name: "vm1", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	agent, _ := client.New(srv.URL, e.Secret, client.Options{})
	st, err := agent.WatchDesiredState(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	actor, err := ctl.Authenticate(ctx, token, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		st  jit.DesiredState
		err error
	}
	done := make(chan answer, 1)
	go func() {
		st, err := agent.WatchDesiredState(ctx, st.Revision)
		done <- answer{st, err}
	}()
	time.Sleep(100 * time.Millisecond) // the watch is waiting

	// Every database reader busy (and more reads queued) until release.
	release := make(chan struct{})
	var readers sync.WaitGroup
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
		readers.Wait()
	}()
	for range 64 {
		readers.Go(func() {
			db.View(ctx, func(store.Tx) error { <-release; return nil })
		})
	}
	time.Sleep(50 * time.Millisecond)
	// The change wakes the watch, whose read then queues past the wait.
	if _, err := ctl.PutPolicy(ctx, actor, e.VM.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP",
		AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * api.LongPoll)
	close(release)

	select {
	case got := <-done:
		if got.err != nil {
			t.Fatalf("long poll during a busy database: %v", got.err)
		}
		if got.st.Revision <= st.Revision || len(got.st.Lock) != 1 {
			t.Errorf("long poll answered revision %d with %d locked ports; want past %d with the new policy's port", got.st.Revision, len(got.st.Lock), st.Revision)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not answer within 10 s of the database freeing up")
	}
}
