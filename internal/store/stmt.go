package store

import (
	"context"
	"database/sql"
	"errors"
)

// Stmt is one SQL statement and its arguments.
type Stmt struct {
	Query string
	Args  []any
	// lazy statements (savepoints) may wait past a read: they change
	// nothing a read could see.
	lazy bool
	// owner is the update that queued the statement (see Conn.Owner).
	owner int
}

// Rows is the result of a query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Pipe sends statements over one database connection. Stmts run in order
// and stop at the first failure, whose index a Pipe returns with the
// error (len(stmts) when the final query failed): the statements before it
// ran, the others did not. A database that can pipeline sends them all in
// one round trip.
type Pipe interface {
	// Exec runs stmts and returns the rows the last one affected.
	Exec(ctx context.Context, stmts []Stmt) (n int64, failed int, err error)
	// Query runs stmts and then q, and returns q's rows, which the caller
	// closes before using the Pipe again.
	Query(ctx context.Context, stmts []Stmt, q string, args []any) (rows Rows, failed int, err error)
	Close() error
}

// Conn is the connection of one writer (or reader): a Querier over a Pipe
// that can hold writes back. Writes whose result nobody reads wait on the
// Conn (Defer) and travel with the next statement that needs an answer, in
// one round trip when the database can pipeline. A read sends the writes
// waiting before it in the same round trip, so it sees them. One goroutine
// uses a Conn at a time. Transactions on it are plain BEGIN/COMMIT
// statements.
type Conn struct {
	pipe    Pipe
	pending []Stmt
	writes  int // how many of pending are not lazy
	// sends counts the round trips that carried waiting statements, and
	// failures those whose error was returned to the caller.
	sends, failures int
	// owner tags the statements deferred from now on (an update of a
	// batch); late, when set, is told when a statement of an earlier owner
	// fails in a later owner's round trip, and returns what undoes the
	// earlier owner's work before the round trip is tried again.
	owner int
	late  func(owner int, err error) []Stmt
}

// NewConn makes a Conn over p.
func NewConn(p Pipe) *Conn { return &Conn{pipe: p} }

// Defer queues a write whose result nobody needs; it is sent with the next
// Exec, Query (which sends waiting writes first) or Flush. Its error, if any, is returned by that call (or,
// for an earlier owner's write, reported to that owner).
func (c *Conn) Defer(q string, args ...any) {
	c.pending = append(c.pending, Stmt{Query: q, Args: args, owner: c.owner})
	c.writes++
}

// deferLazy queues a statement that may wait past reads (a savepoint).
func (c *Conn) deferLazy(q string) {
	c.pending = append(c.pending, Stmt{Query: q, lazy: true, owner: c.owner})
}

// discard drops the waiting statements of owner.
func (c *Conn) discard(owner int) {
	kept := c.pending[:0]
	c.writes = 0
	for _, s := range c.pending {
		if s.owner != owner {
			kept = append(kept, s)
			if !s.lazy {
				c.writes++
			}
		}
	}
	clear(c.pending[len(kept):])
	c.pending = kept
}

// take empties the queue and returns what was waiting.
func (c *Conn) take() []Stmt {
	p := c.pending
	if len(p) > 0 {
		c.sends++
	}
	c.pending, c.writes = nil, 0
	return p
}

// retry decides, after a round trip of sent statements failed at index
// failed, whether to try again: when the failing statement was an earlier
// owner's, that owner is told and undone (in a round trip of its own: the
// transaction accepts nothing else before), its other statements are
// dropped, and the statements of later owners that did not run wait again.
// A failed undo is returned as the current owner's failure.
func (c *Conn) retry(ctx context.Context, sent []Stmt, failed int, err error) (bool, error) {
	if c.late == nil || failed >= len(sent) || sent[failed].owner == c.owner {
		return false, err
	}
	bad := sent[failed].owner
	if _, _, uerr := c.pipe.Exec(ctx, c.late(bad, err)); uerr != nil {
		return false, uerr
	}
	var redo []Stmt
	for _, s := range sent[failed:] {
		if s.owner != bad {
			redo = append(redo, s)
		}
	}
	c.pending = append(redo, c.pending...)
	c.writes = 0
	for _, s := range c.pending {
		if !s.lazy {
			c.writes++
		}
	}
	return true, nil
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
	for {
		sent := c.take()
		stmts := sent
		if final != nil {
			f := *final
			f.owner = c.owner
			stmts = append(stmts, f)
		}
		if len(stmts) == 0 {
			return 0, nil
		}
		n, failed, err := c.pipe.Exec(ctx, stmts)
		if err != nil {
			again, rerr := c.retry(ctx, sent, failed, err)
			if again {
				continue
			}
			c.failures++
			return 0, rerr
		}
		return n, nil
	}
}

// Query runs the waiting statements when writes are among them and then
// q, in one round trip when the database can pipeline.
func (c *Conn) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	for {
		var sent []Stmt
		if c.writes > 0 {
			sent = c.take()
		}
		rows, failed, err := c.pipe.Query(ctx, sent, q, args)
		if err != nil {
			again, rerr := c.retry(ctx, sent, failed, err)
			if again {
				continue
			}
			c.failures++
			return nil, rerr
		}
		return rows, nil
	}
}

// Failures counts the round trips whose error was returned to the caller.
func (c *Conn) Failures() int { return c.failures }

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
	var err error
	if len(s.Args) == 0 {
		r, err = p.c.ExecContext(ctx, s.Query) // BEGIN, COMMIT, SAVEPOINT and the like
	} else {
		var st *sql.Stmt
		if st, err = p.stmt(ctx, s.Query); err == nil {
			r, err = st.ExecContext(ctx, s.Args...)
		}
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
	return n, 0, nil
}

// Query implements Pipe.
func (p *SQLPipe) Query(ctx context.Context, stmts []Stmt, q string, args []any) (Rows, int, error) {
	if _, failed, err := p.Exec(ctx, stmts); err != nil {
		return nil, failed, err
	}
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, len(stmts), err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, len(stmts), err
	}
	return rows, 0, nil
}

// Close closes the statements and returns the connection.
func (p *SQLPipe) Close() error {
	var errs []error
	for _, st := range p.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, p.c.Close())...)
}
