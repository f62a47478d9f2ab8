package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
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
// On a pipelined connection (PostgreSQL) an update's writes wait on the
// connection and travel with its next read, and what is left goes in one
// round trip when the update returns; its savepoint travels with its first
// round trip. An update whose statement failed is rolled back to its
// savepoint and fails alone. When a failure leaves the transaction's state
// unknown (a connection failure, a savepoint that did not run), nothing of
// the batch commits and every update of it fails.
//
// The activity log's lock (Dialect.ChainLock) is taken only by a batch
// that appends events, just before it reads the log's head. A database
// that then reports a deadlock or a serialization failure (Dialect.Retry)
// has the whole batch run again, with the lock taken first.
type Batcher struct {
	open    func(context.Context) (*Conn, error)
	dialect *Dialect
	publish *store.Feed // nil when the database announces changes itself
	log     *slog.Logger

	conn *Conn
	ctx  context.Context // the open transaction's (see attempt)
	// spOpen is true while the previous job's savepoint is still open:
	// the next job releases it when it opens its own.
	spOpen bool
	// spoiled is set when a failure left the transaction in a state not
	// known well enough to go on: nothing of the batch commits.
	spoiled error
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
	fn   func(store.Tx) error
	done chan error
	tx   *SQLTx
	err  error // why the job failed, once it has
}

// The savepoint statements of jobs.
const (
	spSave     = `SAVEPOINT job`
	spRelease  = `RELEASE SAVEPOINT job`
	spRollback = `ROLLBACK TO SAVEPOINT job`
)

// maxTries bounds how often a batch runs when the database asks for a
// retry.
const maxTries = 5

// NewBatcher starts a batcher. open returns the write connection (again
// after a failure); publish, when not nil, hears of each committed
// update's authentication changes and, unless the dialect announces them
// with Notify, of the VMs it changed.
func NewBatcher(open func(context.Context) (*Conn, error), d *Dialect, publish *store.Feed, log *slog.Logger) *Batcher {
	b := &Batcher{open: open, dialect: d, publish: publish, log: log,
		jobs: make(chan *job, maxBatch), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.run()
	return b
}

// Update runs fn in the next batch and returns once it is committed (or
// rolled back, with fn's error).
func (b *Batcher) Update(ctx context.Context, fn func(store.Tx) error) error {
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
// commits and answers them; a batch the database asks to retry runs
// again, with the activity log's lock taken first.
func (b *Batcher) runBatch(first *job) {
	jobs := []*job{first}
	chainFirst := false
	for try := 1; ; try++ {
		var err error
		jobs, err = b.attempt(jobs, try == 1, chainFirst)
		if try < maxTries && b.retry(err) {
			b.log.Warn("the database asked to retry a batch", "err", err, "updates", len(jobs), "try", try)
			for _, j := range jobs {
				j.err, j.tx = nil, nil
			}
			chainFirst = true
			continue
		}
		for _, j := range jobs {
			switch {
			case j.err != nil:
				j.done <- j.err
			case err != nil:
				j.done <- err
			default:
				if b.publish != nil {
					if j.tx.AuthChanged {
						b.publish.AuthChanged()
					}
					if b.dialect.Notify == nil {
						b.publish.Publish(j.tx.Changed...)
					}
				}
				j.done <- nil
			}
		}
		if b.dialect.BetweenBatches != nil {
			b.dialect.BetweenBatches()
		}
		return
	}
}

// retry reports whether the database asked to retry the batch, which
// failed with err (nothing of it committed).
func (b *Batcher) retry(err error) bool {
	return err != nil && b.dialect.Retry != nil && b.dialect.Retry(err)
}

// attempt runs jobs in one transaction (and, when gather is set, the jobs
// queued behind them) and commits. It returns the jobs it ran, each with
// its own error, and the error of the batch (every job without one of its
// own fails with it). It gives up after batchTimeout (a database that
// stopped answering).
func (b *Batcher) attempt(jobs []*job, gather, chainFirst bool) ([]*job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	b.ctx = ctx
	if err := b.beginTx(ctx, chainFirst); err != nil {
		return jobs, err
	}
	for i := 0; b.spoiled == nil; i++ {
		if i == len(jobs) {
			if !gather || len(jobs) == maxBatch || ctx.Err() != nil { // a batch past its time takes no more
				break
			}
			select {
			case j := <-b.jobs:
				jobs = append(jobs, j)
			default:
			}
			if i == len(jobs) {
				break
			}
		}
		b.runJob(jobs[i])
	}
	if b.spoiled != nil {
		b.end(ctx, `ROLLBACK`)
		return jobs, fmt.Errorf("another update of the same commit failed: %w", b.spoiled)
	}
	var ok []*job
	for _, j := range jobs {
		if j.err == nil && j.tx != nil {
			ok = append(ok, j)
		}
	}
	if len(ok) == 0 {
		b.end(ctx, `ROLLBACK`)
		return jobs, nil
	}
	if err := b.flush(ctx, ok, chainFirst); err != nil {
		b.end(ctx, `ROLLBACK`)
		return jobs, err
	}
	if err := b.commit(); err != nil {
		b.log.Error("commit failed", "err", err)
		return jobs, fmt.Errorf("commit: %w", err)
	}
	return jobs, nil
}

// flush writes what the batch's updates deferred to the commit: the
// activity events, in job order, after taking the log's lock and reading
// its head (unless locked already); one revision bump per changed VM and
// the announcements of the changed VMs. The writes wait on the connection
// and go with the COMMIT.
func (b *Batcher) flush(ctx context.Context, jobs []*job, locked bool) error {
	var ids []string
	var events []*jit.Event
	seen := map[string]bool{}
	auth := false
	for _, j := range jobs {
		events = append(events, j.tx.Events...)
		auth = auth || j.tx.AuthChanged
		for _, id := range j.tx.Changed {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	t := &SQLTx{Ctx: ctx, Q: b.conn, Dialect: b.dialect}
	if len(events) > 0 {
		if !locked {
			for _, s := range b.dialect.ChainLock {
				b.conn.Defer(s.Query, s.Args...)
			}
		}
		if err := t.appendEvents(&ChainHead{}, events); err != nil {
			return fmt.Errorf("append activity events: %w", err)
		}
	}
	if err := t.bumpRevisions(ids); err != nil {
		return fmt.Errorf("bump revisions: %w", err)
	}
	if auth {
		ids = append(ids, store.AuthChange) // announced, never bumped
	}
	if b.dialect.Notify != nil && len(ids) > 0 {
		for _, s := range b.dialect.Notify(ids) {
			b.conn.Defer(s.Query, s.Args...)
		}
	}
	return nil
}

// beginTx opens the connection if needed and begins a transaction, taking
// the activity log's lock too when chainFirst is set.
func (b *Batcher) beginTx(ctx context.Context, chainFirst bool) error {
	b.spOpen, b.spoiled = false, nil
	if b.conn == nil {
		c, err := b.open(ctx)
		if err != nil {
			return b.dialect.unavailable(err)
		}
		c.failFast = true
		b.conn = c
	}
	b.conn.reset()
	begin := b.dialect.Begin
	if chainFirst {
		begin = append(slices.Clip(begin), b.dialect.ChainLock...)
	}
	for _, s := range begin {
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
		gone := b.conn.Closed()
		b.drop()
		return fmt.Errorf("begin: %w", b.dialect.classify(err, gone))
	}
	return nil
}

// commit sends what waits on the connection with the COMMIT. When that
// fails, the outcome is looked up where the database can tell.
func (b *Batcher) commit() error {
	// The COMMIT gets a time of its own: the batch's may be spent on
	// waiting for locks.
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	b.conn.reset()
	_, err := b.conn.Exec(ctx, `COMMIT`)
	if err == nil {
		return nil
	}
	failed, gone := b.conn.failedQuery, b.conn.Closed()
	b.drop() // closing the connection ends whatever is left of the transaction
	// Unless a statement before the COMMIT is known to have failed, the
	// COMMIT may have taken effect even so; a database that can tell (by
	// transaction id) decides. (On PostgreSQL a lost answer shows on the
	// pipeline's first unread result, so a failure of an earlier statement
	// proves nothing there.)
	if b.txid == "" && failed != "?" && failed != `COMMIT` {
		return b.dialect.classify(err, gone)
	}
	switch ok, serr := b.committed(); {
	case serr != nil:
		b.log.Error("commit outcome unknown", "err", err, "lookup", serr)
		return jit.Errorf(jit.EUnavailable, "the commit failed, and whether it took effect is unknown (check before retrying): %v", err)
	case ok:
		b.log.Warn("the commit's answer was lost, but it committed", "err", err)
		return nil
	}
	return b.dialect.classify(err, gone)
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

// end rolls back what is left of the transaction, dropping what waits; on
// failure the connection is replaced.
func (b *Batcher) end(ctx context.Context, stmt string) {
	b.conn.take()
	b.conn.reset()
	if _, err := b.conn.Exec(ctx, stmt); err != nil {
		b.drop()
	}
}

func (b *Batcher) drop() {
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
}

// spoil marks the open transaction as unable to commit.
func (b *Batcher) spoil(err error) {
	if b.spoiled == nil {
		b.spoiled = err
	}
}

// savepoint runs a savepoint statement: on a pipelined connection it waits
// for the next round trip, elsewhere it runs now. *ran is set once it ran.
func (b *Batcher) savepoint(q string, ran *bool) error {
	if b.conn.pipelined {
		b.conn.deferLazy(q, ran)
		return nil
	}
	_, err := b.conn.Exec(b.ctx, q)
	if err == nil && ran != nil {
		*ran = true
	}
	return err
}

// runJob runs j in a savepoint; on error or panic everything it wrote is
// rolled back and the rest of the batch is unaffected. What the job left
// waiting on the connection goes when it returns. The savepoint stays open
// until the next job or the commit releases it.
func (b *Batcher) runJob(j *job) {
	c := b.conn
	c.reset()
	wasOpen, mark := b.spOpen, len(c.pending)
	var sp bool // the job's savepoint ran
	var err error
	if b.spOpen {
		err = b.savepoint(spRelease, nil)
	}
	if err == nil {
		err = b.savepoint(spSave, &sp)
	}
	b.spOpen = true
	j.tx = &SQLTx{Ctx: b.ctx, Q: c, Dialect: b.dialect}
	if err == nil {
		err = b.call(j)
	}
	dbFailed := c.err != nil
	if err == nil && dbFailed {
		// On PostgreSQL the failed statement spoiled the transaction
		// until the rollback to the savepoint.
		err = jit.Errorf(jit.EInternal, "update went on after a database error")
	}
	if err == nil {
		switch {
		case !sp && c.writes == 0: // it sent nothing and has nothing to send
			c.truncate(mark)
			b.spOpen = wasOpen
			return
		case c.writes > 0 || !c.pipelined: // its writes go with the release
			err = b.savepoint(spRelease, nil)
			if err == nil {
				err = c.Flush(b.ctx)
			}
			if err == nil {
				b.spOpen = false
				return
			}
			err = b.dialect.classify(err, c.Closed())
		default: // the release waits for the next round trip
			return
		}
	}
	if c.err != nil && b.dialect.Retry != nil && b.dialect.Retry(c.err) {
		// The database gave up on the whole transaction: the batch runs
		// again (see runBatch).
		b.spoil(c.err)
	}
	if !sp {
		c.truncate(mark) // nothing of it was sent
		if c.err != nil {
			b.spoil(err) // a failure without its savepoint in place
		}
		b.spOpen = wasOpen
	} else {
		// At once: on PostgreSQL nothing else runs before it (pgx
		// prepares new statements in a round trip of their own).
		c.take() // what it left waiting
		c.reset()
		if _, rerr := c.Exec(b.ctx, spRollback); rerr != nil {
			err = errors.Join(err, rerr)
			b.spoil(rerr)
		}
	}
	j.err = err
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
