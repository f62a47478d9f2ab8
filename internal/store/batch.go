package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

const (
	// maxBatch bounds how many updates one commit carries.
	maxBatch = 256
	// batchTimeout bounds a batch, from its BEGIN (and its wait for the
	// write lock) to its COMMIT, and then the COMMIT.
	batchTimeout = 30 * time.Second
)

// Batcher commits concurrent updates together (group commit): one
// goroutine owns the write connection, begins a transaction, runs every
// update that is waiting, each in a savepoint of its own, commits once and
// answers them all. Many small durable transactions then share one
// disk flush, and, on PostgreSQL, one hold of the activity log's lock.
//
// An update's writes wait on the connection (Conn.Defer) and travel with
// the next update's first round trip, so that on PostgreSQL an access
// request costs about one round trip inside the lock. A write that fails
// there is reported to the update that made it, which is rolled back to
// its savepoint; the round trip is then tried again for the next update.
// The Batcher tracks which savepoints and writes ran (it is the Conn's
// tracker); when a failure leaves it unsure, the batch is spoiled and
// every update of it fails, so that no update reported committed loses a
// write and no failed one commits one.
type Batcher struct {
	open    func(context.Context) (*Conn, error)
	dialect *Dialect
	publish *Feed // nil when the database announces changes itself
	log     *slog.Logger

	conn *Conn
	ctx  context.Context // the open transaction's (see runBatch)
	head ChainHead       // the log's head within the open transaction (see flush)
	// spOpen is true while the previous job's savepoint is still open:
	// the next job releases it when it opens its own.
	spOpen bool
	// batch is the open transaction's jobs, by owner number (index).
	batch []*job
	// spoiled is set when a failure left the transaction in a state not
	// known well enough to go on (it is not known what failed, a savepoint
	// statement failed, or a job failed before its savepoint existed):
	// nothing of the batch commits.
	spoiled error
	// failedQuery is the statement that failed last ("?": unknown).
	failedQuery string
	// txid is the open transaction's id, when the database tells it.
	txid string
	jobs chan *job
	stop chan struct{}
	// mu orders queueing jobs against Close: once closed is set, nothing
	// more is queued, so every queued job is answered.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
}

type job struct {
	fn   func(Tx) error
	done chan error
	tx   *SQLTx
	err  error // why the job failed, once it has
	// sp is set once the job's savepoint exists on the server, wrote once
	// one of its writes ran there.
	sp, wrote bool
}

// The savepoint statements of jobs.
const (
	spSave     = `SAVEPOINT job`
	spRelease  = `RELEASE SAVEPOINT job`
	spRollback = `ROLLBACK TO SAVEPOINT job`
)

// NewBatcher starts a batcher. open returns the write connection (again
// after a failure); publish, when not nil, receives the VMs changed by each
// committed update.
func NewBatcher(open func(context.Context) (*Conn, error), d *Dialect, publish *Feed, log *slog.Logger) *Batcher {
	b := &Batcher{open: open, dialect: d, publish: publish, log: log,
		jobs: make(chan *job, maxBatch), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.run()
	return b
}

// Update runs fn in the next batch and returns once it is committed (or
// rolled back, with fn's error).
func (b *Batcher) Update(ctx context.Context, fn func(Tx) error) error {
	j := &job{fn: fn, done: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return jit.Errorf(jit.EUnavailable, "store is closed")
	}
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	return <-j.done
}

// Close stops the batcher after the updates already queued.
func (b *Batcher) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.stop)
	b.mu.Unlock()
	b.wg.Wait()
	if b.conn != nil {
		return b.conn.Close()
	}
	return nil
}

func (b *Batcher) run() {
	defer b.wg.Done()
	for {
		var first *job
		select {
		case first = <-b.jobs:
		case <-b.stop:
			select { // drain what was queued before the stop
			case first = <-b.jobs:
			default:
				return
			}
		}
		b.runBatch(first)
	}
}

// runBatch runs first and the jobs waiting behind it in one transaction,
// commits and answers them; it gives up after batchTimeout (a database
// that stopped answering), and then every job gets an error.
func (b *Batcher) runBatch(first *job) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	b.ctx = ctx
	if err := b.beginTx(ctx); err != nil {
		first.done <- err
		return
	}
	b.batch = append(b.batch[:0], first)
	b.runJob(0)
more:
	for len(b.batch) < maxBatch && ctx.Err() == nil { // a batch past its time takes no more
		select {
		case j := <-b.jobs:
			b.batch = append(b.batch, j)
			b.runJob(len(b.batch) - 1)
		default:
			break more
		}
	}
	// What the batch does now is its own, not a job's. Reading the
	// log's head sends what the last job left waiting; a failure of
	// its writes is reported to it (see failed).
	b.conn.setOwner(-1)
	herr := (&SQLTx{Ctx: ctx, Q: b.conn, Dialect: b.dialect}).readHead(&b.head)
	var ok []*job
	for _, j := range b.batch {
		switch {
		case j.err != nil:
			j.done <- j.err
		case b.spoiled != nil:
			j.done <- fmt.Errorf("another update of the same commit failed: %w", b.spoiled)
		case herr != nil:
			j.done <- fmt.Errorf("read the activity log's head: %w", herr)
		default:
			ok = append(ok, j)
		}
	}
	b.spoiled = nil
	clear(b.batch)
	b.batch = b.batch[:0]
	if len(ok) == 0 {
		b.end(ctx, `ROLLBACK`)
		return
	}
	err := b.flush(ctx, ok)
	if err == nil {
		// The COMMIT gets a time of its own: the batch's may be spent on
		// waiting for the write lock.
		cctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		b.failedQuery = "?"
		err = b.end(cctx, `COMMIT`)
		cancel()
		// Unless a statement before the COMMIT is known to have failed,
		// the COMMIT may have taken effect even so; a database that can
		// tell (by transaction id) decides. (On PostgreSQL a lost answer
		// shows on the pipeline's first unread result, so a failure of an
		// earlier statement proves nothing there.)
		if err != nil && (b.txid != "" || b.failedQuery == "?" || b.failedQuery == `COMMIT`) {
			switch ok, serr := b.committed(); {
			case serr != nil:
				b.log.Error("commit outcome unknown", "err", err, "lookup", serr)
				err = jit.Errorf(jit.EUnavailable, "the commit failed, and whether it took effect is unknown (check before retrying): %v", err)
			case ok:
				b.log.Warn("the commit's answer was lost, but it committed", "err", err)
				err = nil
			}
		}
	} else {
		b.end(ctx, `ROLLBACK`)
	}
	if err != nil {
		b.log.Error("commit failed", "err", err)
		for _, j := range ok {
			j.done <- fmt.Errorf("commit: %w", err)
		}
		return
	}
	for _, j := range ok {
		if b.publish != nil {
			b.publish.Publish(j.tx.Changed...)
		}
		j.done <- nil
	}
}

// flush writes what the batch's updates deferred to the commit: the
// activity events, in job order, one revision bump per changed VM and the
// announcements of the changed VMs. The statements wait on the connection
// and go with the COMMIT.
func (b *Batcher) flush(ctx context.Context, jobs []*job) error {
	var ids []string
	var events []*jit.Event
	seen := map[string]bool{}
	for _, j := range jobs {
		events = append(events, j.tx.Events...)
		for _, id := range j.tx.Changed {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	t := &SQLTx{Ctx: ctx, Q: b.conn, Dialect: b.dialect}
	if err := t.appendEvents(&b.head, events); err != nil {
		return fmt.Errorf("append activity events: %w", err)
	}
	if err := t.bumpRevisions(ids); err != nil {
		return fmt.Errorf("bump revisions: %w", err)
	}
	if b.dialect.Notify != nil && len(ids) > 0 {
		for _, s := range b.dialect.Notify(ids) {
			b.conn.Defer(s.Query, s.Args...)
		}
	}
	return nil
}

// beginTx opens the connection if needed and begins a transaction.
func (b *Batcher) beginTx(ctx context.Context) error {
	b.head, b.spOpen, b.spoiled = ChainHead{}, false, nil
	if b.conn == nil {
		c, err := b.open(ctx)
		if err != nil {
			return jit.Errorf(jit.EUnavailable, "database unavailable: %v", err)
		}
		c.track = b
		b.conn = c
	}
	b.conn.setOwner(-1)
	// On PostgreSQL this serializes write transactions across servers from
	// their start: one lock order everywhere, so no deadlocks between
	// replicas.
	for _, s := range b.dialect.Begin {
		b.conn.Defer(s.Query, s.Args...)
	}
	var err error
	b.txid = ""
	if b.dialect.TxID != "" { // in the same round trip as the BEGIN
		err = (&SQLTx{Ctx: ctx, Q: b.conn, Dialect: b.dialect}).row(b.dialect.TxID).Scan(&b.txid)
	} else {
		err = b.conn.Flush(ctx)
	}
	if err != nil {
		b.conn.Exec(ctx, `ROLLBACK`)
		b.drop()
		return fmt.Errorf("begin: %w", err)
	}
	return nil
}

// committed looks up, on a connection of its own, whether the open
// transaction (whose COMMIT got no answer) committed. It waits while the
// transaction is still in progress (the server may still be finishing it).
func (b *Batcher) committed() (bool, error) {
	if b.txid == "" || b.dialect.TxStatus == "" {
		return false, errors.New("this database cannot tell")
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	var c *Conn
	var err error
	for c == nil {
		if c, err = b.open(ctx); err != nil {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return false, err
			}
		}
	}
	defer c.Close()
	for {
		var st sql.NullString
		if err := (&SQLTx{Ctx: ctx, Q: c, Dialect: b.dialect}).row(b.dialect.TxStatus, b.txid).Scan(&st); err != nil {
			return false, err
		}
		switch st.String {
		case "committed":
			return true, nil
		case "aborted":
			return false, nil
		case "in progress":
		default:
			return false, fmt.Errorf("transaction %s: status %q", b.txid, st.String)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false, fmt.Errorf("transaction %s still in progress: %w", b.txid, ctx.Err())
		}
	}
}

// end commits or rolls back, sending what waits on the connection with the
// COMMIT; on failure the connection is replaced.
func (b *Batcher) end(ctx context.Context, stmt string) error {
	if stmt != `COMMIT` {
		b.conn.pending, b.conn.writes = nil, 0
	}
	if _, err := b.conn.Exec(ctx, stmt); err != nil {
		// Closing the connection ends whatever is left of the transaction.
		b.drop()
		return err
	}
	return nil
}

func (b *Batcher) drop() {
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
}

// job returns job i of the open batch, or nil.
func (b *Batcher) job(i int) *job {
	if i < 0 || i >= len(b.batch) {
		return nil
	}
	return b.batch[i]
}

// spoil marks the open transaction as unable to commit.
func (b *Batcher) spoil(err error) {
	if b.spoiled == nil {
		b.spoiled = err
	}
}

// ran implements tracker.
func (b *Batcher) ran(stmts []Stmt) {
	for _, s := range stmts {
		j := b.job(s.owner)
		switch {
		case j == nil:
		case s.Query == spSave:
			j.sp = true
		case !s.lazy:
			j.wrote = true
		}
	}
}

// failed implements tracker. A write of an earlier job that failed in a
// later job's round trip fails that job, and rolling back to its savepoint
// (the newest on the server, since nothing after the failure ran) undoes
// it. When it is not known what failed, or a savepoint statement did, the
// transaction's state is unknown and it is spoiled: nothing of it commits.
func (b *Batcher) failed(s *Stmt, err error) []Stmt {
	b.failedQuery = "?"
	if s != nil {
		b.failedQuery = s.Query
	}
	if s == nil || s.lazy {
		b.spoil(err)
		return nil
	}
	if s.owner < 0 || s.owner == b.conn.owner {
		return nil // the caller's own failure: it gets the error
	}
	j := b.job(s.owner)
	if j == nil || !j.sp {
		b.spoil(err)
		return nil
	}
	if j.err == nil {
		j.err = dbErr(err)
	}
	return []Stmt{{Query: spRollback}}
}

// runJob runs job i of the batch in a savepoint; on error or panic
// everything it wrote is rolled back and the rest of the batch is
// unaffected. The savepoint statements wait on the connection and travel
// with the job's first round trip (its writes may wait for the next job's
// first one), so they cost no round trip of their own; a job that sent
// nothing drops them. The savepoint stays open until the next job or the
// commit.
func (b *Batcher) runJob(i int) {
	j, c := b.batch[i], b.conn
	c.setOwner(i)
	wasOpen, failures := b.spOpen, c.failures
	if b.spOpen {
		c.deferLazy(spRelease)
	}
	c.deferLazy(spSave)
	b.spOpen = true
	j.tx = &SQLTx{Ctx: b.ctx, Q: c, Dialect: b.dialect}
	err := b.call(j)
	dbFailed := c.failures != failures
	if err == nil && dbFailed {
		// On PostgreSQL the failed statement spoiled the transaction
		// until the rollback to the savepoint.
		err = jit.Errorf(jit.EInternal, "update went on after a database error")
	}
	if err == nil {
		if !j.sp && !hasWrites(c.pending, i) { // it sent nothing and has nothing to send
			c.discard(i)
			b.spOpen = wasOpen
		}
		return
	}
	c.discard(i)
	c.setOwner(i) // its rollback may go now
	switch {
	case !j.sp: // nothing of it ran
		if dbFailed {
			b.spoil(err) // a failure without its savepoint in place
		}
		b.spOpen = wasOpen
	case j.wrote || dbFailed:
		if _, rerr := c.Exec(b.ctx, spRollback); rerr != nil {
			err = errors.Join(err, rerr)
			b.spoil(rerr)
		}
	}
	if j.err == nil {
		j.err = err
	}
}

// hasWrites reports whether job owner has writes among stmts.
func hasWrites(stmts []Stmt, owner int) bool {
	for _, s := range stmts {
		if s.owner == owner && !s.lazy {
			return true
		}
	}
	return false
}

// call runs the job's function, turning a panic into an error.
func (b *Batcher) call(j *job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("panic in update", "panic", p)
			err = fmt.Errorf("panic in update: %v", p)
		}
	}()
	return j.fn(j.tx)
}
