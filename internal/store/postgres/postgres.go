// Package postgres is the store for several ajard replicas sharing one
// PostgreSQL database, through github.com/jackc/pgx connections that send
// several statements in one round trip (pipelining); sqlstore.SQLTx serves it
// unchanged.
//
// Updates go through a sqlstore.Batcher: each replica commits concurrent
// updates together, in one READ COMMITTED transaction. A batch that
// appends activity events takes a transaction advisory lock before it
// reads the log's head, so the hash chain stays one linear chain however
// many replicas write; batches that append nothing (agents' heartbeats)
// never wait for it. A batch that loses a deadlock runs again, with the
// lock taken first. A changed VM
// is announced with NOTIFY in the transaction that changed it; every
// replica LISTENs on a connection of its own and hands what it hears to
// its Changes subscribers. Reads run in REPEATABLE READ snapshots on a
// pool of connections.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

const (
	// channel is the NOTIFY channel that carries changed VM ids.
	channel = "ajar_vm_changes"
	// Advisory lock keys ("ajar" and a number).
	chainLockKey   = 0x616a6172_00000001 // appends to the activity log
	migrateLockKey = 0x616a6172_00000002 // schema migrations
	leadLockBase   = 0x616a6c64_00000000 // "ajld" | a hash of the lead's name (see Lead)
	// maxConns bounds the read connections of one DB.
	maxConns = 32
	// notifyChunk is how many VM ids one notification carries.
	notifyChunk = 100
	// leadRetry is how often a replica tries to take a lead, and leadCheck
	// how often the leader checks its lock's connection.
	leadRetry = 2 * time.Second
	leadCheck = 2 * time.Second
	// leadSettle is how long a new leader waits before it leads: longer
	// than a former leader takes to find out (a check and its timeout).
	leadSettle = 2*leadCheck + time.Second
	// sweepEvery is how often idle read connections end the snapshot
	// they still hold.
	sweepEvery = 100 * time.Millisecond
	// listenIdle is how long the listener waits for a notification before
	// it pings the server to find out whether the connection still works.
	listenIdle = 30 * time.Second
)

// DB is a store.Store on a PostgreSQL database.
type DB struct {
	log *slog.Logger
	cfg *pgx.ConnConfig
	// migrations is the schema this server knows (sqlstore.Migrations;
	// fewer in tests of an older server).
	migrations []string
	batch      *sqlstore.Batcher
	// readers holds idle read connections; slots bounds how many exist.
	readers chan *sqlstore.Conn
	slots   chan struct{}
	// closeMu orders what starts work (returning a read connection,
	// holding a lead) against Close.
	closeMu sync.Mutex
	stopped <-chan struct{} // closed by Close

	dialect sqlstore.Dialect
	feed    store.Feed
	closed  atomic.Bool
	stop    context.CancelFunc // stops the listener
	wg      sync.WaitGroup
	once    sync.Once
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string), applies pending migrations and starts listening for changes.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	return open(ctx, dsn, log, sqlstore.Migrations)
}

func open(ctx context.Context, dsn string, log *slog.Logger, migrations []string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{log: log, cfg: cfg, migrations: migrations, readers: make(chan *sqlstore.Conn, maxConns), slots: make(chan struct{}, maxConns), dialect: sqlstore.Dialect{
		Numbered:  true,
		Begin:     []sqlstore.Stmt{{Query: `BEGIN ISOLATION LEVEL READ COMMITTED`}},
		ChainLock: []sqlstore.Stmt{{Query: `SELECT pg_advisory_xact_lock($1)`, Args: []any{int64(chainLockKey)}}},
		Retry:     retry,
		Conflict:  conflict,
		Down:      down,
		TxID:      `SELECT pg_current_xact_id()::text`,
		TxStatus:  `SELECT pg_xact_status($1::text::xid8)`,
		Notify: func(vmIDs []string) []sqlstore.Stmt {
			// One notification per chunk of ids; payloads stay well under
			// PostgreSQL's 8000-byte limit.
			var out []sqlstore.Stmt
			for len(vmIDs) > 0 {
				n := min(len(vmIDs), notifyChunk)
				out = append(out, sqlstore.Stmt{Query: `SELECT pg_notify('` + channel + `', $1)`, Args: []any{strings.Join(vmIDs[:n], ",")}})
				vmIDs = vmIDs[n:]
			}
			return out
		},
	}}
	if err := db.migrate(ctx); err != nil {
		return nil, err
	}
	// Listen before returning, so that no change committed after Open
	// returns can be missed.
	conn, err := db.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: listen: %w", err)
	}
	db.batch = sqlstore.NewBatcher(func(ctx context.Context) (*sqlstore.Conn, error) { return newPipe(ctx, cfg) },
		&db.dialect, &db.feed, log)
	lctx, stop := context.WithCancel(context.Background())
	db.stop, db.stopped = stop, lctx.Done()
	db.wg.Add(2)
	go db.listener(lctx, conn)
	go db.sweep(lctx)
	return db, nil
}

// retry reports whether PostgreSQL gave up on a transaction that may
// succeed when run again: deadlock_detected, serialization_failure.
func retry(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// conflict reports whether err is a unique_violation, and of which
// constraint.
func conflict(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return pe.ConstraintName, true
	}
	return "", false
}

// down reports whether err means the server cannot be used for now: it
// could not be reached or its connection failed, it is shutting down or
// starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
// cannot_connect_now), a connection exception (class 08), or it is out of
// resources (class 53: disk full, out of memory, too many connections).
func down(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") ||
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// pipe is the writer's sqlstore.Pipe: a pgx connection of its own that sends
// several statements in one round trip (pgx's batch: one Sync at the end,
// PostgreSQL runs them in order and skips the rest after a failure).
type pipe struct{ c *pgx.Conn }

func newPipe(ctx context.Context, cfg *pgx.ConnConfig) (*sqlstore.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return sqlstore.NewConn(pipe{c}, true), nil
}

func (p pipe) send(ctx context.Context, stmts []sqlstore.Stmt, q string, args []any) pgx.BatchResults {
	var b pgx.Batch
	for _, s := range stmts {
		b.Queue(s.Query, s.Args...)
	}
	if q != "" {
		b.Queue(q, args...)
	}
	return p.c.SendBatch(ctx, &b)
}

// ran turns the failure of statement i into what sqlstore.Pipe reports: i
// statements ran when the server refused statement i, and -1 otherwise
// (pgx failed preparing the statements, or the connection failed: a lost
// answer shows on the first result not read yet), since then it is unknown
// what ran.
func ran(i int, err error) int {
	var pre pgx.ErrPreprocessingBatch
	var pe *pgconn.PgError
	if errors.As(err, &pre) || !errors.As(err, &pe) {
		return -1 // not the server refusing statement i: the connection's failure
	}
	return i
}

// Exec implements sqlstore.Pipe.
func (p pipe) Exec(ctx context.Context, stmts []sqlstore.Stmt) (int64, int, error) {
	if len(stmts) == 1 {
		tag, err := p.c.Exec(ctx, stmts[0].Query, stmts[0].Args...)
		if err != nil {
			return 0, ran(0, err), err
		}
		return tag.RowsAffected(), 1, nil
	}
	br := p.send(ctx, stmts, "", nil)
	var n int64
	for i := range stmts {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return 0, ran(i, err), err
		}
		n = tag.RowsAffected()
	}
	// Every statement answered: a failure now (waiting for the server to
	// be ready again) is the connection's, and the next use finds out.
	br.Close()
	return n, len(stmts), nil
}

// Query implements sqlstore.Pipe.
func (p pipe) Query(ctx context.Context, stmts []sqlstore.Stmt, q string, args []any) (sqlstore.Rows, int, error) {
	if len(stmts) == 0 {
		rows, err := p.c.Query(ctx, q, args...)
		if err != nil {
			return nil, ran(0, err), err
		}
		return pipeRows{Rows: rows}, 0, nil
	}
	br := p.send(ctx, stmts, q, args)
	for i := range stmts {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, ran(i, err), err
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, ran(len(stmts), err), err
	}
	return pipeRows{rows, br}, len(stmts), nil
}

// Closed implements sqlstore.Pipe.
func (p pipe) Closed() bool { return p.c.IsClosed() }

// Close implements sqlstore.Pipe.
func (p pipe) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.c.Close(ctx)
}

// pipeRows are a query's rows; closing them ends the batch they came in.
type pipeRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r pipeRows) Close() error {
	r.Rows.Close()
	err := r.Rows.Err()
	if r.br != nil {
		err = errors.Join(err, r.br.Close())
	}
	return err
}

// migrate applies the pending migrations (db.migrations), each in a transaction of
// its own that holds an advisory lock, so that replicas starting together
// apply every step once.
func (db *DB) migrate(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, db.cfg)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		done, err := db.migrateStep(ctx, conn)
		if err != nil || done {
			return err
		}
	}
}

func (db *DB) migrateStep(ctx context.Context, conn *pgx.Conn) (done bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLockKey)); err != nil {
		return false, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	if have > len(db.migrations) {
		return false, sqlstore.NewerSchema(have, len(db.migrations))
	}
	if have < len(db.migrations) {
		v := have + 1
		if _, err := tx.Exec(ctx, db.migrations[v-1]); err != nil {
			return false, fmt.Errorf("migrate to %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			return false, fmt.Errorf("migrate to %d: %w", v, err)
		}
		defer func() {
			if err == nil {
				db.log.Info("applied schema migration", "version", v)
			}
		}()
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrate: commit: %w", err)
	}
	return have == len(db.migrations), nil
}

// Update implements store.Store through the batcher: concurrent updates
// of this replica share one transaction (each in its own savepoint), one
// hold of the write lock and one commit.
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if db.closed.Load() {
		return jit.Errorf(jit.EUnavailable, "store is closed")
	}
	return db.batch.Update(ctx, fn)
}

// View implements store.Store on a read connection of the replica's
// pool. The snapshot's BEGIN travels with its first query and its
// ROLLBACK with the connection's next use or, when it idles, with the
// sweeper's next round (see sweep), so a read costs one round trip per
// query.
func (db *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	if db.closed.Load() {
		return jit.Errorf(jit.EUnavailable, "store is closed")
	}
	c, err := db.reader(ctx)
	if err != nil {
		return err
	}
	returned := false
	defer func() {
		switch {
		case !returned: // fn panicked: the connection's state is unknown
			db.release(c, false)
		case c.Closed():
			db.release(c, false)
			if ctx.Err() == nil {
				// Not our cancellation: the server went away, and the
				// idle connections with it.
				db.dropIdle()
			}
		default:
			c.Defer(`ROLLBACK`) // sent with the next use, or by the sweeper
			db.release(c, true)
		}
	}()
	c.Defer(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	err = fn(&sqlstore.SQLTx{Ctx: ctx, Q: c, Dialect: &db.dialect})
	returned = true
	return err
}

// sweep ends, every sweepEvery, the snapshots that idle read connections
// still hold (their ROLLBACK waits for the next use), so that no snapshot
// stays open for long and holds back VACUUM.
func (db *DB) sweep(ctx context.Context) {
	defer db.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for n := len(db.readers); n > 0; n-- {
			var c *sqlstore.Conn
			select {
			case c = <-db.readers:
			default:
			}
			if c == nil {
				break
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.Flush(fctx)
			cancel()
			db.release(c, err == nil)
		}
	}
}

// reader takes an idle read connection, or opens one while fewer than
// maxConns exist.
func (db *DB) reader(ctx context.Context) (*sqlstore.Conn, error) {
	select {
	case c := <-db.readers:
		return c, nil
	default:
	}
	select {
	case c := <-db.readers:
		return c, nil
	case db.slots <- struct{}{}:
		c, err := newPipe(ctx, db.cfg)
		if err != nil {
			<-db.slots
			return nil, jit.Errorf(jit.EUnavailable, "database unavailable: %v", err)
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release returns a read connection to the pool when it is usable and
// the store open, and closes it otherwise.
func (db *DB) release(c *sqlstore.Conn, usable bool) {
	db.closeMu.Lock()
	if usable && !db.closed.Load() {
		db.readers <- c // never blocks: at most maxConns exist
		db.closeMu.Unlock()
		return
	}
	db.closeMu.Unlock()
	c.Close()
	<-db.slots
}

// dropIdle closes the idle read connections.
func (db *DB) dropIdle() {
	for {
		select {
		case c := <-db.readers:
			db.release(c, false)
		default:
			return
		}
	}
}

// Changes implements store.Store.
func (db *DB) Changes(ctx context.Context) <-chan string { return db.feed.Subscribe(ctx) }

// AuthGeneration implements store.Store.
func (db *DB) AuthGeneration() uint64 { return db.feed.AuthGeneration() }

// Lead implements store.Store with a session advisory lock keyed by name,
// held on a connection of its own: whoever holds it leads. It tries every
// leadRetry; having taken the lock it waits leadSettle, so that a replica
// that led until then has found out that it no longer does. The holder
// checks its connection every leadCheck, and when the connection fails the
// lead is over (PostgreSQL drops the lock with the session and another
// replica takes it). The lock's session asks for TCP keepalives of a few
// seconds, so that the server also drops the lock of a leader whose host
// vanished without closing its connection.
func (db *DB) Lead(ctx context.Context, name string) (<-chan struct{}, error) {
	h := fnv.New32a()
	h.Write([]byte(name))
	key := int64(leadLockBase | uint64(h.Sum32()))
	for {
		conn, err := pgx.ConnectConfig(ctx, db.cfg)
		if err == nil {
			_, err = conn.Exec(ctx, `SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3`)
		}
		for err == nil {
			var ok bool
			if err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
				break
			}
			if !ok {
				err = db.sleep(ctx, leadRetry)
				continue
			}
			if err = db.sleep(ctx, leadSettle); err != nil {
				break
			}
			if err = conn.Ping(ctx); err != nil {
				break
			}
			db.closeMu.Lock()
			if db.closed.Load() {
				db.closeMu.Unlock()
				err = errClosed
				break
			}
			lost := make(chan struct{})
			db.wg.Add(1)
			db.closeMu.Unlock()
			go db.hold(ctx, conn, lost)
			return lost, nil
		}
		if conn != nil {
			conn.Close(context.Background())
		}
		if db.closed.Load() {
			return nil, errClosed
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		db.log.Warn("lead: database unavailable", "lead", name, "err", err, "retry_in", leadRetry)
		if err := db.sleep(ctx, leadRetry); err != nil {
			return nil, err
		}
	}
}

// errClosed is what calls on a closed store return.
var errClosed = jit.Errorf(jit.EUnavailable, "store is closed")

// hold keeps conn, and the lock on it, until ctx ends, the store closes or
// the connection fails; then it closes conn and lost.
func (db *DB) hold(ctx context.Context, conn *pgx.Conn, lost chan struct{}) {
	defer db.wg.Done()
	defer close(lost)
	defer conn.Close(context.Background())
	t := time.NewTicker(leadCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-db.stopped:
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, leadCheck)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			db.log.Warn("lead lost: its database connection failed", "err", err)
			return
		}
	}
}

// sleep waits d, or until ctx ends or the store closes.
func (db *DB) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-db.stopped:
		return errClosed
	}
}

// Close stops listening and closes the connections.
func (db *DB) Close() error {
	var err error
	db.once.Do(func() {
		db.closeMu.Lock()
		db.closed.Store(true)
		db.closeMu.Unlock()
		err = db.batch.Close()
		db.stop()
		db.wg.Wait()
		db.dropIdle()
	})
	return err
}

// listen opens the listener's connection.
func (db *DB) listen(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, db.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listener owns conn: it publishes every notification to the feed until
// ctx ends, and reconnects with backoff when the connection fails. After a
// reconnect it publishes store.AllVMs, since changes may have been missed.
func (db *DB) listener(ctx context.Context, conn *pgx.Conn) {
	defer db.wg.Done()
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		if conn == nil {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			var err error
			if conn, err = db.listen(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				db.log.Warn("reconnecting the change listener", "err", err, "retry_in", backoff)
				continue
			}
			db.log.Info("change listener reconnected")
			backoff = 50 * time.Millisecond
			db.feed.AuthChanged()
			db.feed.Publish(store.AllVMs)
		}
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			ids := strings.Split(n.Payload, ",")
			if i := slices.Index(ids, store.AuthChange); i >= 0 {
				db.feed.AuthChanged()
				ids = slices.Delete(ids, i, i+1)
			}
			db.feed.Publish(ids...)
			continue
		case ctx.Err() != nil:
			return
		case wctx.Err() != nil && !conn.IsClosed():
			// Quiet for a while: make sure the connection still works.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return
			}
		}
		db.log.Warn("change listener lost its connection", "err", err)
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		cancel()
		conn = nil
	}
}
