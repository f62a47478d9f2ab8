package store

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

// tracker follows what a Conn's round trips did (the Batcher, which owns
// the transaction's savepoints).
type tracker interface {
	// ran is told of statements that ran.
	ran(stmts []Stmt)
	// failed is told of a failed statement (nil when it is not known which
	// failed). It returns what undoes the statement's owner's work when
	// that owner is an earlier one and the round trip should be tried
	// again for the others, and nil when the error goes to the caller.
	failed(s *Stmt, err error) (undo []Stmt)
}

// Conn is the connection of one writer (or reader): a Querier over a Pipe
// that can hold writes back. Writes whose result nobody reads wait on the
// Conn (Defer) and travel with the next statement that needs an answer, in
// one round trip when the database can pipeline; a read sends everything
// waiting before it in the same round trip, so it sees the writes. One
// goroutine uses a Conn at a time. Transactions on it are plain
// BEGIN/COMMIT statements.
type Conn struct {
	pipe    Pipe
	pending []Stmt
	writes  int // how many of pending are not lazy
	// failures counts the errors returned to callers, rows' included.
	failures int
	// owner tags the statements queued from now on (an update of a batch).
	owner int
	// ownerErr is the database error the current owner got, if any: on
	// PostgreSQL nothing more of it can run before its savepoint is rolled
	// back, so its further calls fail at once (see setOwner).
	ownerErr error
	track    tracker // nil outside a Batcher
}

// setOwner makes owner the one whose statements are queued from now on.
func (c *Conn) setOwner(owner int) { c.owner, c.ownerErr = owner, nil }

// fail counts err, returned to the current owner.
func (c *Conn) fail(err error) error {
	c.failures++
	if c.track != nil && c.owner >= 0 && c.ownerErr == nil {
		c.ownerErr = err
	}
	return err
}

// stuck returns the error that ends the current owner's use of the
// connection, if any.
func (c *Conn) stuck() error {
	if c.ownerErr != nil {
		return fmt.Errorf("an earlier statement of this update failed: %w", c.ownerErr)
	}
	return nil
}

// NewConn makes a Conn over p.
func NewConn(p Pipe) *Conn { return &Conn{pipe: p} }

// Defer queues a write whose result nobody needs; it is sent with the next
// Exec, Query or Flush. Its error, if any, is returned by that call (or,
// for an earlier owner's write, reported to that owner).
func (c *Conn) Defer(q string, args ...any) {
	c.pending = append(c.pending, Stmt{Query: q, Args: args, owner: c.owner})
	c.writes++
}

// deferLazy queues a statement that needs no round trip of its own (a
// savepoint): it goes with the next one, whatever it is.
func (c *Conn) deferLazy(q string) {
	c.pending = append(c.pending, Stmt{Query: q, lazy: true, owner: c.owner})
}

// discard drops the waiting statements of owner.
func (c *Conn) discard(owner int) {
	kept := c.pending[:0]
	for _, s := range c.pending {
		if s.owner != owner {
			kept = append(kept, s)
		}
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	c.count()
}

func (c *Conn) count() {
	c.writes = 0
	for _, s := range c.pending {
		if !s.lazy {
			c.writes++
		}
	}
}

// take empties the queue and returns what was waiting.
func (c *Conn) take() []Stmt {
	p := c.pending
	c.pending, c.writes = nil, 0
	return p
}

// recover handles a failed round trip of stmts, whose first nsent came
// from the queue: it tells the tracker what ran and what failed and, when
// the failure was an earlier owner's, undoes that owner's work and queues
// again the later owners' statements that did not run (reporting true).
func (c *Conn) recover(ctx context.Context, stmts []Stmt, nsent, ran int, err error) bool {
	if ran >= 0 && c.track != nil {
		c.track.ran(stmts[:ran])
	}
	if c.track == nil {
		return false
	}
	var bad *Stmt
	if ran >= 0 && ran < len(stmts) {
		bad = &stmts[ran]
	}
	undo := c.track.failed(bad, err)
	if undo == nil || bad == nil || ran >= nsent {
		return false
	}
	if _, _, uerr := c.pipe.Exec(ctx, undo); uerr != nil {
		c.track.failed(nil, uerr)
		return false
	}
	var redo []Stmt
	for _, s := range stmts[ran:nsent] {
		if s.owner != bad.owner {
			redo = append(redo, s)
		}
	}
	c.pending = append(redo, c.pending...)
	c.count()
	return true
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
		n, ran, err := c.pipe.Exec(ctx, stmts)
		if err == nil {
			if c.track != nil {
				c.track.ran(stmts)
			}
			return n, nil
		}
		if c.recover(ctx, stmts, len(sent), ran, err) {
			continue
		}
		return 0, c.fail(err)
	}
}

// Query runs the waiting statements and then q, in one round trip when the
// database can pipeline.
func (c *Conn) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	if err := c.stuck(); err != nil {
		return nil, err
	}
	for {
		sent := c.take()
		st := Stmt{Query: q, Args: args, owner: c.owner}
		rows, ran, err := c.pipe.Query(ctx, sent, q, args)
		if err == nil {
			if c.track != nil {
				c.track.ran(sent)
			}
			return &connRows{Rows: rows, c: c, st: st}, nil
		}
		if c.recover(ctx, append(sent, st), len(sent), ran, err) {
			continue
		}
		return nil, c.fail(err)
	}
}

// connRows counts an error that comes with the rows (some databases report
// a failed query only there) as the query's failure.
type connRows struct {
	Rows
	c      *Conn
	st     Stmt
	failed bool
}

func (r *connRows) note(err error) error {
	if err != nil && !r.failed {
		r.failed = true
		r.c.fail(err)
		if r.c.track != nil {
			r.c.track.failed(&r.st, err)
		}
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

// Close closes the statements and returns the connection.
func (p *SQLPipe) Close() error {
	var errs []error
	for _, st := range p.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, p.c.Close())...)
}
