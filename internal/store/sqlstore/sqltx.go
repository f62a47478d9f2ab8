package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Querier is what SQLTx needs of a connection (Conn).
type Querier interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Dialect holds what differs between the SQL databases.
type Dialect struct {
	// Numbered placeholders ($1, $2, ...) instead of ?.
	Numbered bool
	// Begin starts a write transaction.
	Begin []Stmt
	// ChainLock takes the lock that keeps the activity log one linear
	// chain across servers (PostgreSQL); a batch takes it only when it
	// appends events. Nil when Begin serializes writers already (SQLite).
	ChainLock []Stmt
	// Retry reports whether err means the database gave up on the
	// transaction (a deadlock, a serialization failure) and it should run
	// again; nil when that cannot happen.
	Retry func(err error) bool
	// Conflict reports whether err is a uniqueness violation, and names
	// the violated index or columns as the database does.
	Conflict func(err error) (index string, ok bool)
	// Down reports whether err means the database cannot be used for now
	// (unreachable, shutting down, out of disk): the error then reaches
	// users as jit.EUnavailable.
	Down func(err error) bool
	// TxID, when set, is a query for the open transaction's id as text, and
	// TxStatus one for whether the transaction with id $1 committed
	// ("committed", "aborted" or "in progress"): with them a COMMIT whose
	// answer was lost is looked up rather than reported as unknown.
	TxID, TxStatus string
	// Notify returns the statements that announce, inside the transaction
	// about to commit, the VMs whose desired state it changed; nil when the
	// adapter publishes changes itself after the commit.
	Notify func(vmIDs []string) []Stmt
	// IndexedBy says that the database takes INDEXED BY (SQLite), for the
	// few queries its planner, which keeps no statistics here, would
	// answer from a worse index.
	IndexedBy bool
	// BetweenBatches, when set, is called by the writer between two
	// batches, after answering the first: nothing is written meanwhile
	// (SQLite copies what is left of its write-ahead log into the
	// database there, so that the next commit writes the log over from
	// its beginning).
	BetweenBatches func()
}

// indexedBy names the index a query must use, where the dialect takes it.
func (d *Dialect) indexedBy(index string) string {
	if !d.IndexedBy {
		return ""
	}
	return " INDEXED BY " + index
}

// ChainHead is the last event of the activity log as a write transaction
// sees it, kept between appends so that each append is one statement.
type ChainHead struct {
	Seq   int64
	Hash  string
	Known bool
}

// SQLTx implements store.Tx over database/sql for both SQL adapters.
type SQLTx struct {
	Ctx     context.Context
	Q       Querier
	Dialect *Dialect
	// Changed collects the VMs whose revision this transaction bumps at
	// commit, and Events the activity events it appends then; the
	// Batcher writes both for a whole batch at once (see flush).
	Changed []string
	Events  []*jit.Event
	// AuthChanged is set by writes that may change how a token
	// authenticates (see store.Store.AuthGeneration).
	AuthChanged bool
}

func (t *SQLTx) rebind(q string) string {
	if !t.Dialect.Numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (t *SQLTx) exec(q string, args ...any) (int64, error) {
	n, err := t.Q.Exec(t.Ctx, t.rebind(q), args...)
	if err != nil {
		return 0, t.dbErr(err)
	}
	return n, nil
}

// write runs a write whose result nobody reads. On a pipelined Conn it
// waits for the connection's next round trip and travels with it; a
// failure comes back from that round trip (at the latest when the update
// ends, from Update).
func (t *SQLTx) write(q string, args ...any) error {
	if c, ok := t.Q.(*Conn); ok && c.pipelined {
		c.Defer(t.rebind(q), args...)
		return nil
	}
	_, err := t.exec(q, args...)
	return err
}

func (t *SQLTx) query(q string, args ...any) (Rows, error) {
	r, err := t.Q.Query(t.Ctx, t.rebind(q), args...)
	if err != nil {
		return nil, t.dbErr(err)
	}
	return r, nil
}

// scanner is a row to scan.
type scanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// firstRow scans the first row of its rows, or returns sql.ErrNoRows, and
// closes them.
type firstRow struct{ rows Rows }

func (r firstRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// row runs a query for one row; the caller scans it at once.
func (t *SQLTx) row(q string, args ...any) scanner {
	rows, err := t.query(q, args...)
	if err != nil {
		return errRow{err}
	}
	return firstRow{rows}
}

// dbErr classifies a database error of the transaction's connection.
func (t *SQLTx) dbErr(err error) error {
	c, _ := t.Q.(*Conn)
	return t.Dialect.classify(err, c != nil && c.Closed())
}

// errDatabase is the error users see when the database is down.
var errDatabase = jit.Errorf(jit.EUnavailable, "the database is unavailable; try again later")

// classify turns a database error into what store.Tx promises, keeping the
// database's error inside (errors.As finds it): a uniqueness violation is
// jit.EConflict; an outage (connGone: the connection is known to be lost)
// is jit.EUnavailable; anything else is returned as it is.
func (d *Dialect) classify(err error, connGone bool) error {
	var je *jit.Error
	switch {
	case err == nil || errors.As(err, &je):
		return err
	case d.Conflict != nil:
		if _, ok := d.Conflict(err); ok {
			return fmt.Errorf("%w: %w", jit.Errorf(jit.EConflict, "already exists"), err)
		}
	}
	if connGone || (d.Down != nil && d.Down(err)) {
		return d.unavailable(err)
	}
	return err
}

// unavailable wraps err, an outage, as jit.EUnavailable.
func (d *Dialect) unavailable(err error) error {
	return fmt.Errorf("%w: %w", errDatabase, err)
}

func affected(n int64, what, id string) error {
	if n == 0 {
		return jit.Errorf(jit.ENotFound, "%s %s not found", what, id)
	}
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err)) // only our own plain types get here
	}
	return string(b)
}

// in appends "AND col IN (?, ...)" for a non-nil list; an empty list
// matches nothing.
func in(where []string, args []any, col string, vals []string) ([]string, []any) {
	if vals == nil {
		return where, args
	}
	if len(vals) == 0 {
		return append(where, "1=0"), args
	}
	where = append(where, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
	for _, v := range vals {
		args = append(args, v)
	}
	return where, args
}

func whereClause(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}
