package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ajarhq/ajar/internal/jit"
)

// maxBatch bounds how many updates one commit carries.
const maxBatch = 256

// Batcher commits concurrent updates together (group commit): one
// goroutine owns the write connection, begins a transaction, runs every
// update that is waiting, each in a savepoint of its own, commits once and
// answers them all. Many small durable transactions then share one
// disk flush, and, on PostgreSQL, one hold of the activity log's lock.
type Batcher struct {
	open    func(context.Context) (*Conn, error)
	dialect *Dialect
	publish *Feed // nil when the database announces changes itself
	log     *slog.Logger

	conn *Conn
	head ChainHead // the log's head within the open transaction (see flush)
	// spOpen is true while the previous job's savepoint is still open:
	// the next job releases it when it opens its own.
	spOpen bool
	jobs   chan *job
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

type job struct {
	ctx  context.Context
	fn   func(Tx) error
	done chan error
	tx   *SQLTx
}

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
	j := &job{ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan error, 1)}
	select {
	case b.jobs <- j:
	case <-b.stop:
		return jit.Errorf(jit.EUnavailable, "store is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-j.done
}

// Close stops the batcher after the updates already queued.
func (b *Batcher) Close() error {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
	if b.conn != nil {
		return b.conn.Close()
	}
	return nil
}

func (b *Batcher) run() {
	defer b.wg.Done()
	ctx := context.Background()
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
		if err := b.beginTx(ctx); err != nil {
			first.done <- err
			continue
		}
		var ok []*job
		run := func(j *job) {
			if err := b.runJob(j); err != nil {
				j.done <- err
				return
			}
			ok = append(ok, j)
		}
		run(first)
	more:
		for len(ok) < maxBatch {
			select {
			case j := <-b.jobs:
				run(j)
			default:
				break more
			}
		}
		if len(ok) == 0 {
			b.end(ctx, `ROLLBACK`)
			continue
		}
		err := b.flush(ctx, ok)
		if err == nil {
			err = b.end(ctx, `COMMIT`)
		} else {
			b.end(ctx, `ROLLBACK`)
		}
		if err != nil {
			b.log.Error("commit failed", "err", err)
			for _, j := range ok {
				j.done <- fmt.Errorf("commit: %w", err)
			}
			continue
		}
		for _, j := range ok {
			if b.publish != nil {
				b.publish.Publish(j.tx.Changed...)
			}
			j.done <- nil
		}
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
	b.head, b.spOpen = ChainHead{}, false
	if b.conn == nil {
		c, err := b.open(ctx)
		if err != nil {
			return jit.Errorf(jit.EUnavailable, "database unavailable: %v", err)
		}
		b.conn = c
	}
	// On PostgreSQL this serializes write transactions across servers from
	// their start: one lock order everywhere, so no deadlocks between
	// replicas.
	if _, err := b.conn.Send(ctx, b.dialect.Begin...); err != nil {
		b.conn.ExecContext(ctx, `ROLLBACK`)
		b.drop()
		return fmt.Errorf("begin: %w", err)
	}
	return nil
}

// end commits or rolls back, sending what waits on the connection with the
// COMMIT; on failure the connection is replaced.
func (b *Batcher) end(ctx context.Context, stmt string) error {
	if stmt != `COMMIT` {
		b.conn.Discard()
	}
	if _, err := b.conn.Send(ctx, Stmt{Query: stmt}); err != nil {
		b.conn.ExecContext(ctx, `ROLLBACK`)
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

// runJob runs one job in a savepoint; on error or panic everything it
// wrote is rolled back and the rest of the batch is unaffected. The
// savepoint statements wait on the connection and travel with the job's
// first round trip that carries writes (or with its writes at the end),
// so they cost no round trip of their own; a job that wrote nothing never
// sends them. The savepoint stays open until the next job or the commit.
func (b *Batcher) runJob(j *job) (err error) {
	c := b.conn
	wasOpen, sends := b.spOpen, c.sends
	if b.spOpen {
		c.deferLazy(`RELEASE SAVEPOINT job`)
	}
	c.deferLazy(`SAVEPOINT job`)
	b.spOpen = true
	j.tx = &SQLTx{Ctx: j.ctx, Q: c, Dialect: b.dialect}
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("panic in update", "panic", p)
			err = fmt.Errorf("panic in update: %v", p)
		}
		if err == nil {
			if ferr := c.Flush(j.ctx); ferr != nil {
				err = dbErr(ferr)
			}
		}
		if c.sends == sends { // nothing of this job reached the database
			c.Discard()
			b.spOpen = wasOpen
			return
		}
		if err != nil {
			c.Discard()
			if _, rerr := c.ExecContext(j.ctx, `ROLLBACK TO SAVEPOINT job`); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	return j.fn(j.tx)
}
