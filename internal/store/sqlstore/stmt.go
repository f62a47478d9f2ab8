package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Stmt is one SQL statement and its arguments.
type Stmt struct {
	Query string
	Args  []any
	// lazy statements (savepoints) need no round trip of their own: they
	// wait for the next statement that goes, whatever it is.
	lazy bool
	// ran, when not nil, is set once the statement ran.
	ran *bool
}

// Rows is the result of a query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Pipe sends statements over one database connection. Stmts run in order
// and stop at the first failure. On a failure a Pipe returns how many
// statements ran (succeeded) before it, so that stmts[ran] is the one that
// failed and the rest did not run; or -1 when it cannot tell what ran. A
// database that can pipeline sends them all in one round trip.
type Pipe interface {
	// Exec runs stmts and returns the rows the last one affected.
	Exec(ctx context.Context, stmts []Stmt) (n int64, ran int, err error)
	// Query runs stmts and then q, and returns q's rows, which the caller
	// closes before using the Pipe again (ran == len(stmts) when q failed).
	Query(ctx context.Context, stmts []Stmt, q string, args []any) (rows Rows, ran int, err error)
	// Closed reports whether the connection is known to be gone.
	Closed() bool
	Close() error
}

// Conn is the connection of one writer (or reader): a Querier over a Pipe.
// On a pipelined Conn, writes whose result nobody reads wait (Defer) and
// travel with the next statement that needs an answer, in one round trip;
// a read sends everything waiting before it, so it sees the writes. One
// goroutine uses a Conn at a time. Transactions on it are plain
// BEGIN/COMMIT statements.
type Conn struct {
	pipe Pipe
	// pipelined is false for a database in the process (SQLite): there a
	// write runs at once, since nothing is saved by holding it back.
	pipelined bool
	pending   []Stmt
	writes    int // how many of pending are not lazy
	// err is the first failure since the last reset; failFast makes every
	// later call return it (on PostgreSQL nothing more can run in the
	// transaction until its savepoint is rolled back).
	err      error
	failFast bool
	// failedQuery is the statement that failed last ("?": unknown).
	failedQuery string
}

// NewConn makes a Conn over p; pipelined says whether writes wait for the
// next round trip.
func NewConn(p Pipe, pipelined bool) *Conn { return &Conn{pipe: p, pipelined: pipelined} }

// Defer queues a write whose result nobody needs; it is sent with the next
// Exec, Query or Flush, and its error, if any, is returned by that call.
func (c *Conn) Defer(q string, args ...any) {
	c.pending = append(c.pending, Stmt{Query: q, Args: args})
	c.writes++
}

// deferLazy queues a statement that needs no round trip of its own (a
// savepoint); *ran is set once it ran.
func (c *Conn) deferLazy(q string, ran *bool) {
	c.pending = append(c.pending, Stmt{Query: q, lazy: true, ran: ran})
}

// truncate drops the waiting statements from the n-th on.
func (c *Conn) truncate(n int) {
	n = min(n, len(c.pending)) // a round trip may have taken them
	clear(c.pending[n:])
	c.pending = c.pending[:n]
	c.writes = 0
	for _, s := range c.pending {
		if !s.lazy {
			c.writes++
		}
	}
}

// reset forgets the last failure.
func (c *Conn) reset() { c.err = nil }

// fail records err, returned to the caller; stmts[n] failed (n < 0:
// unknown).
func (c *Conn) fail(stmts []Stmt, n int, err error) error {
	c.failedQuery = "?"
	if n >= 0 && n < len(stmts) {
		c.failedQuery = stmts[n].Query
	}
	if c.err == nil {
		c.err = err
	}
	return err
}

// stuck returns the error that ends the use of a fail-fast connection
// until its reset.
func (c *Conn) stuck() error {
	if c.failFast && c.err != nil {
		return fmt.Errorf("an earlier statement of this update failed: %w", c.err)
	}
	return nil
}

// take empties the queue and returns what was waiting.
func (c *Conn) take() []Stmt {
	p := c.pending
	c.pending, c.writes = nil, 0
	return p
}

// ran marks the first n of stmts as run.
func ran(stmts []Stmt, n int) {
	for _, s := range stmts[:max(0, min(n, len(stmts)))] {
		if s.ran != nil {
			*s.ran = true
		}
	}
}

// Flush sends the waiting statements when writes are among them.
func (c *Conn) Flush(ctx context.Context) error {
	if c.writes == 0 {
		return nil
	}
	_, err := c.send(ctx, nil)
	return err
}

// Exec runs the waiting statements and then q, in one round trip when the
// database can pipeline, and returns the rows q affected.
func (c *Conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return c.send(ctx, &Stmt{Query: q, Args: args})
}

// send runs the waiting statements and then final, if any, and returns
// the rows the last one affected.
func (c *Conn) send(ctx context.Context, final *Stmt) (int64, error) {
	if err := c.stuck(); err != nil {
		return 0, err
	}
	stmts := c.take()
	if final != nil {
		stmts = append(stmts, *final)
	}
	if len(stmts) == 0 {
		return 0, nil
	}
	n, r, err := c.pipe.Exec(ctx, stmts)
	if err != nil {
		ran(stmts, r)
		return 0, c.fail(stmts, r, err)
	}
	ran(stmts, len(stmts))
	return n, nil
}

// Query runs the waiting statements and then q, in one round trip when the
// database can pipeline.
func (c *Conn) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	if err := c.stuck(); err != nil {
		return nil, err
	}
	sent := c.take()
	rows, r, err := c.pipe.Query(ctx, sent, q, args)
	if err != nil {
		ran(sent, r)
		return nil, c.fail(append(sent, Stmt{Query: q}), r, err)
	}
	ran(sent, len(sent))
	return &connRows{Rows: rows, c: c, q: q}, nil
}

// connRows count an error that comes with the rows (some databases report
// a failed query only there) as the query's failure.
type connRows struct {
	Rows
	c      *Conn
	q      string
	failed bool
}

func (r *connRows) note(err error) error {
	if err != nil && !r.failed {
		r.failed = true
		r.c.fail([]Stmt{{Query: r.q}}, 0, err)
	}
	return err
}

func (r *connRows) Err() error   { return r.note(r.Rows.Err()) }
func (r *connRows) Close() error { return r.note(r.Rows.Close()) }

// Closed reports whether the connection is known to be gone.
func (c *Conn) Closed() bool { return c.pipe.Closed() }

// Close closes the connection; what waits is dropped.
func (c *Conn) Close() error {
	c.pending, c.writes = nil, 0
	return c.pipe.Close()
}

// SQLPipe is a Pipe over a database/sql connection that runs one statement
// at a time through statements it prepares once.
type SQLPipe struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

// NewSQLPipe takes a connection from db.
func NewSQLPipe(ctx context.Context, db *sql.DB) (*SQLPipe, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &SQLPipe{c: c, stmts: map[string]*sql.Stmt{}}, nil
}

func (p *SQLPipe) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := p.stmts[q]; ok {
		return st, nil
	}
	st, err := p.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	p.stmts[q] = st
	return st, nil
}

func (p *SQLPipe) exec(ctx context.Context, s Stmt) (int64, error) {
	var r sql.Result
	st, err := p.stmt(ctx, s.Query) // BEGIN, COMMIT and savepoints too: they run often
	if err == nil {
		r, err = st.ExecContext(ctx, s.Args...)
	}
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// Exec implements Pipe.
func (p *SQLPipe) Exec(ctx context.Context, stmts []Stmt) (int64, int, error) {
	var n int64
	for i, s := range stmts {
		var err error
		if n, err = p.exec(ctx, s); err != nil {
			return 0, i, err
		}
	}
	return n, len(stmts), nil
}

// Query implements Pipe.
func (p *SQLPipe) Query(ctx context.Context, stmts []Stmt, q string, args []any) (Rows, int, error) {
	if _, ran, err := p.Exec(ctx, stmts); err != nil {
		return nil, ran, err
	}
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, len(stmts), err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, len(stmts), err
	}
	return rows, len(stmts), nil
}

// Closed implements Pipe: database/sql hides a lost connection.
func (p *SQLPipe) Closed() bool { return false }

// Close closes the statements and returns the connection to its pool,
// first rolling back a transaction left open (a failed COMMIT, a BEGIN past
// its deadline): the pool hands the same connection out again, and it must
// come back clean. With no transaction open the ROLLBACK fails harmlessly.
func (p *SQLPipe) Close() error {
	p.c.ExecContext(context.Background(), `ROLLBACK`)
	var errs []error
	for _, st := range p.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, p.c.Close())...)
}
