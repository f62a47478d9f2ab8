package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
)

// chainLockKey is the advisory lock key of the activity log's chain
// (postgres.go).
const chainLockKey = 0x616a6172_00000001

// seedVMs creates group prod and VMs vm0..vm(n-1).
func seedVMs(t *testing.T, db store.Store, n int) {
	t.Helper()
	update(t, db, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		for i := range n {
			id := fmt.Sprintf("vm%d", i)
			if err := tx.CreateVM(&jit.VM{ID: id, Name: id, Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
}

// heartbeat is what an agent's report does in the store: read its VM,
// write its report, append nothing.
func heartbeat(vmID string, at time.Time) func(store.Tx) error {
	return func(tx store.Tx) error {
		if _, err := tx.GetVM(vmID); err != nil {
			return err
		}
		return tx.SetReport(vmID, &jit.Report{Time: at, Hostname: vmID})
	}
}

// request is what an access request does in the store: read the VM, its
// policy and the grants it may supersede, write the request and grant,
// bump the VM's revision and append events.
func request(vmID, id string) func(store.Tx) error {
	return func(tx store.Tx) error {
		src := "2001:db8::" + id + "/128"
		vm, _, _, err := tx.GetVMAccess(vmID, "alice", []store.GrantTarget{{Port: 22, Source: src}})
		if err != nil {
			return err
		}
		if err := tx.CreateRequest(jit.Request{ID: "r" + id, User: "alice", CreatedAt: t0}); err != nil {
			return err
		}
		g := jit.Grant{ID: "g" + id, RequestID: "r" + id, VMID: vm.ID, VMName: vm.Name, Group: vm.Group, Port: 22, Protocol: "TCP",
			Source: src, User: "alice", StartTime: t0, EndTime: t0.Add(time.Hour), Status: jit.GrantActive}
		if err := tx.CreateGrant(g); err != nil {
			return err
		}
		if err := tx.BumpRevision(vm.ID); err != nil {
			return err
		}
		return tx.AppendEvent(&jit.Event{Time: t0, Actor: "alice", VMID: vm.ID, Group: vm.Group, Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess})
	}
}

// TestHeartbeatsPassTheChainLock: while another replica holds the
// activity log's lock, this replica's updates that append nothing
// (heartbeats) commit, and one that appends an event waits for the lock
// and commits once it is free.
func TestHeartbeatsPassTheChainLock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	seedVMs(t, db, 2)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, dsn) // the other replica's batch
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(chainLockKey)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := db.Update(hctx, heartbeat("vm0", t0.Add(time.Duration(i)*time.Second)))
		cancel()
		if err != nil {
			t.Fatalf("heartbeat %d while the chain's lock is held: %v", i, err)
		}
	}
	appended := make(chan error, 1)
	go func() { appended <- db.Update(ctx, request("vm1", "1")) }()
	select {
	case err := <-appended:
		t.Fatalf("an update appending an event committed while the chain's lock was held elsewhere: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(chainLockKey)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-appended:
		if err != nil {
			t.Fatalf("update appending an event: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the update appending an event did not commit after the lock was freed")
	}
}

// TestHeartbeatsAndRequestsAcrossReplicas runs heartbeats and access
// requests for the same VMs on two replicas at once, as a fleet does: each
// agent reports to one replica, some reports append an event (a
// reconnect), people's requests go to either replica. Every update
// commits (a batch that loses a deadlock runs again), each request lands
// once and the chain verifies.
func TestHeartbeatsAndRequestsAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	replicas := []store.Store{open(t, dsn), open(t, dsn)}
	const vms, workers, rounds = 8, 16, 25
	seedVMs(t, replicas[0], vms)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				n := (w + r) % vms
				vm := fmt.Sprintf("vm%d", n)
				db := replicas[n%2] // the replica its agent reports to
				var fn func(store.Tx) error
				switch w % 4 {
				case 0, 1:
					fn = heartbeat(vm, t0.Add(time.Duration(r)*time.Second))
				case 2: // a request, through either replica
					db = replicas[r%2]
					fn = request(vm, fmt.Sprintf("%d-%d", w, r))
				case 3: // a reconnecting agent's heartbeat appends an event
					hb := heartbeat(vm, t0)
					fn = func(tx store.Tx) error {
						if err := hb(tx); err != nil {
							return err
						}
						return tx.AppendEvent(&jit.Event{Time: t0, Actor: "agent:" + vm, VMID: vm, Group: "prod", Operation: jit.OpAgentConnect, Outcome: jit.OutcomeSuccess})
					}
				}
				if err := db.Update(ctx, fn); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	err := replicas[1].View(ctx, func(tx store.Tx) error {
		grants, err := tx.ListGrants(store.GrantFilter{Status: jit.GrantActive})
		if err != nil {
			return err
		}
		var v jit.ChainVerifier
		if err := tx.WalkEvents(v.Add); err != nil {
			return err
		}
		want := workers / 4 * rounds
		if len(grants) != want || v.Events != int64(2*want) || v.BadSeq != 0 {
			t.Errorf("%d grants (want %d) and %d events (want %d), chain bad at %d", len(grants), want, v.Events, 2*want, v.BadSeq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// proxy forwards loopback TCP connections to addr until cut, which closes
// its listener and every connection: the database is then unreachable
// (connection refused) while the server itself keeps running.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, addr string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(s, c); s.Close() })
			p.wg.Go(func() { io.Copy(c, s); c.Close() })
		}
	})
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestOutageIsUnavailable: when the database goes away under an open
// store (its server ends the sessions, then it cannot be reached at all),
// updates and reads fail with jit.EUnavailable, which users see as "try
// again later", not as an internal error.
func TestOutageIsUnavailable(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	db := open(t, u.String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seedVMs(t, db, 1)
	read := func() error { return db.View(ctx, func(tx store.Tx) error { _, err := tx.GetVM("vm0"); return err }) }
	write := func() error { return db.Update(ctx, heartbeat("vm0", t0)) }
	if err := errors.Join(read(), write()); err != nil {
		t.Fatal(err)
	}

	// The server ends every session (57P01 admin_shutdown).
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	if err := write(); err != nil && jit.ErrorCode(err) != jit.EUnavailable {
		t.Errorf("update on a terminated session: %v (code %s), want unavailable", err, jit.ErrorCode(err))
	}

	// The server cannot be reached at all.
	p.cut()
	if err := write(); jit.ErrorCode(err) != jit.EUnavailable {
		t.Errorf("update with the database unreachable: %v (code %s), want unavailable", err, jit.ErrorCode(err))
	}
	if err := read(); jit.ErrorCode(err) != jit.EUnavailable {
		t.Errorf("read with the database unreachable: %v (code %s), want unavailable", err, jit.ErrorCode(err))
	}
}

var _ = postgres.Open
