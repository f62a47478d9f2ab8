package store

import (
	"context"
	"database/sql"
	"errors"
)

// Conn is one database connection that keeps its prepared statements, so
// that each query is parsed once per connection rather than once per call.
// It is a Querier; one goroutine uses it at a time. Transactions on it are
// plain BEGIN/COMMIT statements.
type Conn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

// NewConn takes a connection from db.
func NewConn(ctx context.Context, db *sql.DB) (*Conn, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, stmts: map[string]*sql.Stmt{}}, nil
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

// ExecContext runs q through its prepared statement.
func (c *Conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if len(args) == 0 {
		return c.c.ExecContext(ctx, q) // BEGIN, COMMIT, SAVEPOINT and the like
	}
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryContext runs q through its prepared statement.
func (c *Conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs q through its prepared statement.
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
