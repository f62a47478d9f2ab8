package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
)

// Stmt is one SQL statement and its arguments.
type Stmt struct {
	Query string
	Args  []any
	// lazy statements (savepoints) may wait past a read: they change
	// nothing a read could see.
	lazy bool
}

// Pipeline runs stmts in order on c in one round trip and returns the
// number of rows the last one affected; it stops at the first failure.
type Pipeline func(ctx context.Context, c *sql.Conn, stmts []Stmt) (int64, error)

// Conn is one database connection that keeps its prepared statements, so
// that each query is parsed once per connection rather than once per call.
// It is a Querier; one goroutine uses it at a time. Transactions on it are
// plain BEGIN/COMMIT statements.
//
// Writes whose result nobody reads can be deferred (Defer): they wait on
// the Conn and go to the database together with the next statement that
// needs an answer, in one round trip when the database can pipeline. A
// read first sends the writes waiting before it, so reads see them.
type Conn struct {
	c       *sql.Conn
	stmts   map[string]*sql.Stmt
	pipe    Pipeline // nil: waiting statements run one at a time
	pending []Stmt
	writes  int // how many of pending are not lazy
	// sends counts the times waiting statements were sent.
	sends int
}

// NewConn takes a connection from db. pipe, when not nil, sends several
// statements in one round trip.
func NewConn(ctx context.Context, db *sql.DB, pipe Pipeline) (*Conn, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, stmts: map[string]*sql.Stmt{}, pipe: pipe}, nil
}

func (c *Conn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	st, err := c.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.stmts[q] = st
	return st, nil
}

// Defer queues a write whose result nobody needs; it is sent with the next
// Exec, Send or Flush, or before the next query. Its error, if any, is
// returned by that call.
func (c *Conn) Defer(q string, args ...any) {
	c.pending = append(c.pending, Stmt{Query: q, Args: args})
	c.writes++
}

// deferLazy queues a statement that may wait past reads (a savepoint).
func (c *Conn) deferLazy(q string) {
	c.pending = append(c.pending, Stmt{Query: q, lazy: true})
}

// Discard drops the waiting statements.
func (c *Conn) Discard() {
	c.pending, c.writes = c.pending[:0], 0
}

// Flush sends the waiting statements when writes are among them.
func (c *Conn) Flush(ctx context.Context) error {
	if c.writes == 0 {
		return nil
	}
	_, err := c.Send(ctx)
	return err
}

// Send runs the waiting statements and then stmts, in one round trip when
// the database can pipeline, and returns the rows the last one affected.
// The waiting statements are gone afterwards, sent or, after a failure,
// dropped.
func (c *Conn) Send(ctx context.Context, stmts ...Stmt) (int64, error) {
	all := append(c.pending, stmts...)
	if len(c.pending) > 0 {
		c.sends++
	}
	c.Discard()
	if len(all) == 0 {
		return 0, nil
	}
	if c.pipe != nil && len(all) > 1 {
		return c.pipe(ctx, c.c, all)
	}
	var n int64
	for _, s := range all {
		r, err := c.exec(ctx, s.Query, s.Args...)
		if err != nil {
			return 0, err
		}
		if n, err = r.RowsAffected(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (c *Conn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if len(args) == 0 {
		return c.c.ExecContext(ctx, q) // BEGIN, COMMIT, SAVEPOINT and the like
	}
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// ExecContext runs q after the waiting statements, in the same round trip
// when the database can pipeline.
func (c *Conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if len(c.pending) == 0 {
		return c.exec(ctx, q, args...)
	}
	n, err := c.Send(ctx, Stmt{Query: q, Args: args})
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

// QueryContext sends the waiting writes, then runs q through its prepared
// statement.
func (c *Conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := c.Flush(ctx); err != nil {
		return nil, err
	}
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs q through its prepared statement. Unlike the other
// calls it cannot report a failed send, so it sends nothing: callers Flush
// first.
func (c *Conn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return c.c.QueryRowContext(ctx, q, args...) // surfaces the error at Scan
	}
	return st.QueryRowContext(ctx, args...)
}

// Close closes the statements and returns the connection.
func (c *Conn) Close() error {
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, c.c.Close())...)
}
