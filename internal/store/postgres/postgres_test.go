package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
	"github.com/ajarhq/ajar/internal/store/storetest"
)

var (
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	t0    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

func open(t testing.TB, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestCompliance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.NewDatabase(t)) })
}

// TestMigrateConcurrently starts several replicas at once on an empty
// database: each migration step is applied once and all of them open.
func TestMigrateConcurrently(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { open(t, dsn) })
	}
	wg.Wait()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, top int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != len(sqlstore.Migrations) || top != len(sqlstore.Migrations) {
		t.Fatalf("schema_migrations: %d rows up to %d, want %d", n, top, len(sqlstore.Migrations))
	}
}

// TestReplicasShareOneChain appends events through two replicas at once:
// the log is one chain that verifies.
func TestReplicasShareOneChain(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	dbs := []*postgres.DB{open(t, dsn), open(t, dsn)}
	const each = 200
	var wg sync.WaitGroup
	for r, db := range dbs {
		for i := range each {
			wg.Go(func() {
				err := db.Update(context.Background(), func(tx store.Tx) error {
					return tx.AppendEvent(&jit.Event{Time: t0, Actor: fmt.Sprintf("replica%d", r), VMID: fmt.Sprint(i),
						Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess})
				})
				if err != nil {
					t.Errorf("replica %d append %d: %v", r, i, err)
				}
			})
		}
	}
	wg.Wait()
	err := dbs[1].View(context.Background(), func(tx store.Tx) error {
		var v jit.ChainVerifier
		if err := tx.WalkEvents(v.Add); err != nil {
			return err
		}
		if v.BadSeq != 0 || v.Events != 2*each {
			t.Errorf("chain: %d events (want %d), bad at %d: %s", v.Events, 2*each, v.BadSeq, v.Problem)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplicasEndGrantOnce has two replicas expire the same grants at
// once: each grant ends once and gets one expiry event.
func TestReplicasEndGrantOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	const n = 100
	update(t, a, func(tx store.Tx) error {
		for i := range n {
			g := jit.Grant{ID: fmt.Sprintf("g%03d", i), RequestID: "r", VMID: "vm", VMName: "vm", Group: "prod", Port: 22,
				Protocol: "tcp", Source: "192.0.2.1/32", User: "alice", StartTime: t0, EndTime: t0.Add(time.Hour), Status: jit.GrantActive}
			if err := tx.CreateGrant(g); err != nil {
				return err
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	for _, db := range []*postgres.DB{a, b} {
		for i := range n {
			wg.Go(func() {
				err := db.Update(context.Background(), func(tx store.Tx) error {
					ok, err := tx.EndGrant(fmt.Sprintf("g%03d", i), jit.GrantExpired, t0.Add(time.Hour), "system")
					if err != nil || !ok {
						return err
					}
					return tx.AppendEvent(&jit.Event{Time: t0, Actor: "system", Operation: jit.OpGrantExpire, Outcome: jit.OutcomeSuccess,
						Details: []byte(fmt.Sprintf(`{"grant":"g%03d"}`, i))})
				})
				if err != nil {
					t.Errorf("expire g%03d: %v", i, err)
				}
			})
		}
	}
	wg.Wait()
	err := b.View(context.Background(), func(tx store.Tx) error {
		ev, err := tx.ListEvents(store.EventFilter{Operation: jit.OpGrantExpire})
		if err != nil {
			return err
		}
		if len(ev) != n {
			t.Errorf("%d expiry events, want %d", len(ev), n)
		}
		active, err := tx.ListGrants(store.GrantFilter{Status: jit.GrantActive})
		if err != nil {
			return err
		}
		if len(active) != 0 {
			t.Errorf("%d grants still active", len(active))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplicaChanges bumps a VM's revision through one replica and
// measures how long the other takes to hear of it.
func TestReplicaChanges(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	update(t, a, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateVM(&jit.VM{ID: "vm1", Name: "vm1", Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Changes(ctx)
	const rounds = 20
	var delays []time.Duration
	for range rounds {
		start := time.Now() // before the commit: the delays are upper bounds
		update(t, a, func(tx store.Tx) error { return tx.BumpRevision("vm1") })
		select {
		case id := <-ch:
			if id != "vm1" {
				t.Fatalf("change for %q, want vm1", id)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the other replica heard of no change within 5s")
		}
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	t.Logf("delay from Update to the other replica's Changes over %d rounds: min %v, median %v, max %v",
		rounds, delays[0], delays[rounds/2], delays[rounds-1])
	if delays[rounds-1] > 100*time.Millisecond {
		t.Errorf("slowest change took %v, want at most 100ms", delays[rounds-1])
	}
}

// TestReplicaAuthGeneration: a token deleted through one replica moves
// the other's authentication generation on, so that what it cached of the
// token is read again.
func TestReplicaAuthGeneration(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	update(t, a, func(tx store.Tx) error {
		if err := tx.CreateUser(jit.User{Name: "alice", CreatedAt: t0}, ""); err != nil {
			return err
		}
		return tx.CreateToken(jit.Token{ID: "t1", Kind: jit.TokenUser, User: "alice", CreatedAt: t0, Hash: []byte("h1")})
	})
	before := b.AuthGeneration()
	update(t, a, func(tx store.Tx) error { return tx.DeleteToken("t1") })
	deadline := time.Now().Add(5 * time.Second)
	for b.AuthGeneration() == before {
		if time.Now().After(deadline) {
			t.Fatal("the other replica's authentication generation did not move within 5s of a token deleted")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestListenerReconnects kills the listener's connection: the replica
// reconnects, says that every VM may have changed, and hears changes again.
func TestListenerReconnects(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	update(t, db, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateVM(&jit.VM{ID: "vm1", Name: "vm1", Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := db.Changes(ctx)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN ajar_vm_changes'`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners: %v", killed, err)
	}
	expect := func(want string) {
		t.Helper()
		select {
		case id := <-ch:
			if id != want {
				t.Fatalf("change %q, want %q", id, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no change %q within 10s", want)
		}
	}
	expect(store.AllVMs)
	update(t, db, func(tx store.Tx) error { return tx.BumpRevision("vm1") })
	expect("vm1")
}

// TestConnectionsLost cuts every connection of a replica (as a server
// restart does): at most the first read and the first update after it
// fail, with an error, and the replica carries on with fresh connections.
func TestConnectionsLost(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	update(t, db, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}) })
	fillReadPool(db, 8)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed)
	if err != nil || killed < 3 {
		t.Fatalf("terminated %d connections: %v", killed, err)
	}
	read := func() error {
		return db.View(ctx, func(tx store.Tx) error {
			g, err := tx.GetGroup("prod")
			if err == nil && g.Name != "prod" {
				err = fmt.Errorf("group %+v", g)
			}
			return err
		})
	}
	if err := read(); err != nil {
		t.Logf("first read after the cut: %v", err)
		if err := read(); err != nil {
			t.Fatalf("second read after the cut: %v", err)
		}
	}
	write := func(name string) error {
		return db.Update(ctx, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: name, CreatedAt: t0}) })
	}
	if err := write("dev"); err != nil {
		t.Logf("first update after the cut: %v", err)
		if err := write("dev"); err != nil {
			t.Fatalf("second update after the cut: %v", err)
		}
	}
	for range 20 { // every read connection is fresh now
		if err := read(); err != nil {
			t.Fatalf("read after recovery: %v", err)
		}
	}
}

// TestIdleReadersHoldNoSnapshot: read connections go back to the pool with
// their snapshot still open (its ROLLBACK travels with the next use), and
// the sweeper ends it soon when the connection idles: no connection stays
// "idle in transaction", which would hold back VACUUM.
func TestIdleReadersHoldNoSnapshot(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	fillReadPool(open(t, dsn), 6)
	noneIdleInTransaction(t, dsn, "the last read")
}

// TestNoDeadlockAcrossReplicas runs updates on two replicas that touch a
// VM row and the activity log in opposite orders: a batch writes revision
// bumps only after it took the activity log's lock, so none deadlocks,
// every update runs once, and the chain verifies.
func TestNoDeadlockAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	update(t, a, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateVM(&jit.VM{ID: "vm1", Name: "vm1", Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0})
	})
	const n = 100
	var runs atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Go(func() {
			errs[i] = db.Update(context.Background(), func(tx store.Tx) error {
				runs.Add(1)
				e := &jit.Event{Time: t0, Actor: "x", Operation: jit.OpPolicyUpdate, Outcome: jit.OutcomeSuccess}
				if i%4 < 2 {
					if err := tx.BumpRevision("vm1"); err != nil {
						return err
					}
					return tx.AppendEvent(e)
				}
				if err := tx.AppendEvent(e); err != nil {
					return err
				}
				return tx.BumpRevision("vm1")
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	if runs.Load() != n {
		t.Errorf("fn ran %d times for %d updates", runs.Load(), n)
	}
	err := a.View(context.Background(), func(tx store.Tx) error {
		vm, err := tx.GetVM("vm1")
		if err != nil {
			return err
		}
		var v jit.ChainVerifier
		if err := tx.WalkEvents(v.Add); err != nil {
			return err
		}
		// A revision moves once per commit, and concurrent updates share
		// commits: more than one commit, at most one per update.
		if vm.Revision < 3 || vm.Revision > 1+n || v.Events != n || v.BadSeq != 0 {
			t.Errorf("revision %d (want 3..%d), %d events (want %d), chain bad at %d", vm.Revision, 1+n, v.Events, n, v.BadSeq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), func(store.Tx) error { return nil }); jit.ErrorCode(err) != jit.EUnavailable {
		t.Fatalf("update after close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func update(t testing.TB, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// BenchmarkAppendEvent appends one event per Update from parallel
// goroutines: the rate at which the chain lock and fsync let appends land.
func BenchmarkAppendEvent(b *testing.B) {
	db := open(b, pgtest.NewDatabase(b))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := db.Update(context.Background(), func(tx store.Tx) error {
				return tx.AppendEvent(&jit.Event{Time: time.Now(), Actor: "bench", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestFailedReadKeepsOthersWrites: an update whose first read fails on the
// server (invalid UTF-8 in a parameter), between an update that wrote
// through immediate statements and one that follows, fails alone: the
// others' writes commit, and every update reported as committed is there.
func TestFailedReadKeepsOthersWrites(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // holds the batcher so that the three below share a batch
		db.Update(ctx, func(tx store.Tx) error { close(held); <-hold; return nil })
	})
	<-held
	errs := make([]error, 3)
	jobs := []func(store.Tx) error{
		func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "a", CreatedAt: t0}) },
		func(tx store.Tx) error { _, err := tx.GetVM("\xff"); return err },
		func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "c", CreatedAt: t0}) },
	}
	for i, fn := range jobs {
		wg.Go(func() { errs[i] = db.Update(ctx, fn) })
		time.Sleep(50 * time.Millisecond) // queue them in order
	}
	close(hold)
	wg.Wait()
	if errs[1] == nil {
		t.Errorf("the update with an invalid id succeeded")
	}
	for _, i := range []int{0, 2} {
		name := string(rune('a' + i))
		err := db.View(ctx, func(tx store.Tx) error { _, err := tx.GetGroup(name); return err })
		switch {
		case errs[i] == nil && err != nil:
			t.Errorf("update %d was reported committed but group %s is missing: %v", i, name, err)
		case errs[i] != nil && err == nil:
			t.Errorf("update %d failed (%v) but group %s exists", i, errs[i], name)
		case errs[i] != nil:
			t.Errorf("update %d failed because of another: %v", i, errs[i])
		}
	}
}

// TestCancelledReadLeavesPoolUsable: a read cancelled in the middle of a
// long result (its connection is closed) does not hand a dead connection
// to the next read.
func TestCancelledReadLeavesPoolUsable(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	for range 10 {
		update(t, db, func(tx store.Tx) error {
			for range 1000 {
				tx.AppendEvent(&jit.Event{Time: t0, Actor: "x", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess,
					Details: []byte(`{"pad":"` + strings.Repeat("x", 200) + `"}`)})
			}
			return nil
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	err := db.View(cctx, func(tx store.Tx) error {
		n := 0
		return tx.WalkEvents(func(*jit.Event) bool {
			if n++; n == 1 {
				cancel()
			}
			return true
		})
	})
	if err == nil {
		t.Logf("the cancelled read finished anyway")
	}
	for range 5 {
		if err := db.View(ctx, func(tx store.Tx) error { _, err := tx.ListGroups(); return err }); err != nil {
			t.Fatalf("read after a cancelled one: %v", err)
		}
	}
}

// TestBadReadKeepsPool: a read that fails on the server (not a lost
// connection) neither closes the idle read connections nor its own.
func TestBadReadKeepsPool(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	ctx := context.Background()
	conns := func() int {
		return count(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	}
	fillReadPool(db, 8)
	before := conns()
	if err := db.View(ctx, func(tx store.Tx) error { _, err := tx.GetVM("\xff"); return err }); err == nil {
		t.Fatalf("a read with an invalid id succeeded")
	}
	if after := conns(); after < before {
		t.Errorf("connections %d before a failed read, %d after", before, after)
	}
	if err := db.View(ctx, func(tx store.Tx) error { _, err := tx.ListGroups(); return err }); err != nil {
		t.Fatalf("read after a failed one: %v", err)
	}
}

// TestPanickingReadReleasesItsConnection: a read whose function panics
// leaves no connection holding a snapshot.
func TestPanickingReadReleasesItsConnection(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn)
	func() {
		defer func() { recover() }()
		db.View(context.Background(), func(tx store.Tx) error {
			tx.ListGroups()
			panic("boom")
		})
	}()
	noneIdleInTransaction(t, dsn, "a panicking read")
}

// TestLead: of two replicas one leads at a time; the other takes over when
// the leader lets go, and a leader whose connection is cut learns that it
// no longer leads.
func TestLead(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	actx, stopA := context.WithCancel(ctx)
	lostA, err := a.Lead(actx, "azure")
	if err != nil {
		t.Fatal(err)
	}
	type lead struct {
		lost <-chan struct{}
		err  error
	}
	bLeads := make(chan lead, 1)
	go func() {
		l, err := b.Lead(ctx, "azure")
		bLeads <- lead{l, err}
	}()
	select {
	case <-bLeads:
		t.Fatalf("two replicas lead at once")
	case <-time.After(3 * time.Second):
	}
	if _, err := a.Lead(ctx, "something else"); err != nil { // leads are independent
		t.Fatal(err)
	}
	stopA()
	select {
	case <-lostA:
	case <-time.After(5 * time.Second):
		t.Fatalf("the leader's channel stayed open after its context ended")
	}
	var lb lead
	select {
	case lb = <-bLeads:
		if lb.err != nil {
			t.Fatal(lb.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the second replica did not take the lead within 20s")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	// Lead locks are the advisory locks whose key's high half is "ajld".
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
		JOIN pg_stat_activity s ON s.pid = l.pid
		WHERE l.locktype = 'advisory' AND s.datname = current_database() AND l.granted
		AND l.classid = x'616a6c64'::int8`).Scan(&killed); err != nil || killed < 1 {
		t.Fatalf("cut %d lead connections: %v", killed, err)
	}
	select {
	case <-lb.lost:
	case <-time.After(10 * time.Second):
		t.Fatalf("a leader whose connection was cut still thinks it leads")
	}
	again, err := a.Lead(ctx, "azure")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-again:
		t.Fatalf("the new lead ended at once")
	default:
	}
}

// count runs a count(*) query on a connection of its own to dsn.
func count(t *testing.T, dsn, q string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// noneIdleInTransaction waits up to 3 s for no connection to the database
// to be idle inside a transaction (holding a snapshot).
func noneIdleInTransaction(t *testing.T, dsn, after string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := count(t, dsn, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction'`)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still idle in a transaction 3s after %s", n, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fillReadPool runs n reads at once, so that the read pool holds n
// connections afterwards.
func fillReadPool(db *postgres.DB, n int) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			db.View(context.Background(), func(tx store.Tx) error { <-start; _, err := tx.ListGroups(); return err })
		})
	}
	time.Sleep(100 * time.Millisecond)
	close(start)
	wg.Wait()
}
