// Package sqlite is the embedded default store: SQLite on disk in WAL mode
// (modernc.org/sqlite, pure Go). Updates go through a sqlstore.Batcher (group
// commit: many small durable transactions share one fsync); reads use a
// pool of connections that keep their prepared statements.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlstore"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is a store.Store on one SQLite file.
type DB struct {
	log *slog.Logger
	// migrations is the schema this server knows (sqlstore.Migrations;
	// fewer in tests of an older server).
	migrations []string
	read       *sql.DB
	write      *sql.DB
	conn       *sql.Conn // migrations only
	batch      *sqlstore.Batcher
	readers    chan *sqlstore.Conn
	closed     chan struct{} // closed by Close
	// checkpointer is the connection checkpoints run on; wg waits for
	// them to stop.
	checkpointer *sql.DB
	wg           sync.WaitGroup
	// ckMu keeps checkpoints one at a time; copied is set after each of
	// checkpoints' and cleared by the writer's (finishCheckpoint).
	ckMu     sync.Mutex
	copied   atomic.Bool
	ckLogged time.Time // when a failed checkpoint was last logged (under ckMu)
	once     sync.Once
	dialect  sqlstore.Dialect
	feed     store.Feed
}

// Open opens (creating if missing, with its folder) the database at path
// and applies pending migrations.
func Open(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	return open(ctx, path, log, sqlstore.Migrations)
}

func open(ctx context.Context, path string, log *slog.Logger, migrations []string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database folder: %w", err)
		}
	}
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "temp_store(MEMORY)") // savepoint journals in memory
		for _, e := range extra {
			q.Add("_pragma", e)
		}
		return "file:" + path + "?" + q.Encode()
	}
	// The writer does not checkpoint after its commits: a checkpoint copies
	// the log into the database and syncs it, which in the writer would
	// hold every update waiting behind it. checkpoints does the copying on
	// a connection of its own; the writer copies what is left between
	// batches (finishCheckpoint). Its cache holds the indexes it writes.
	w, err := sql.Open("sqlite", dsn("wal_autocheckpoint(0)", "journal_size_limit(67108864)", "cache_size(-65536)"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	conn, err := w.Conn(ctx)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		conn.Close()
		w.Close()
		return nil, fmt.Errorf("restrict %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		conn.Close()
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	r.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	db := &DB{log: log, migrations: migrations, read: r, write: w, conn: conn, closed: make(chan struct{})}
	if err := db.migrate(ctx); err != nil {
		db.close()
		return nil, err
	}
	db.conn.Close() // hand the one write connection back to the pool
	db.conn = nil
	n := max(4, 2*runtime.GOMAXPROCS(0))
	db.readers = make(chan *sqlstore.Conn, n)
	for range n {
		c, err := newConn(ctx, r)
		if err != nil {
			db.close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		db.readers <- c
	}
	ck, err := sql.Open("sqlite", dsn())
	if err != nil {
		db.close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	db.checkpointer = ck
	if err := ck.PingContext(ctx); err != nil { // open it now, not at the first checkpoint
		db.close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.wg.Go(db.checkpoints)
	db.dialect = sqlstore.Dialect{Begin: []sqlstore.Stmt{{Query: `BEGIN IMMEDIATE`}}, Conflict: conflict, Down: down, IndexedBy: true,
		BetweenBatches: db.finishCheckpoint}
	db.batch = sqlstore.NewBatcher(func(ctx context.Context) (*sqlstore.Conn, error) { return newConn(ctx, w) },
		&db.dialect, &db.feed, log)
	return db, nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := db.conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(db.migrations) {
		return sqlstore.NewerSchema(have, len(db.migrations))
	}
	for v := have + 1; v <= len(db.migrations); v++ {
		if _, err := db.conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		_, err := db.conn.ExecContext(ctx, db.migrations[v-1])
		if err == nil {
			_, err = db.conn.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v)
		}
		if err != nil {
			db.conn.ExecContext(ctx, `ROLLBACK`)
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		if _, err := db.conn.ExecContext(ctx, `COMMIT`); err != nil {
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		db.log.Info("applied schema migration", "version", v)
	}
	return nil
}

// conflict reports whether err is a uniqueness violation
// (SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY), and of which index or
// columns: SQLite names an expression index ("index 'vms_external_id'")
// and the columns of any other ("vms.grp, vms.name").
func conflict(err error) (string, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) || (se.Code() != sqlite3.SQLITE_CONSTRAINT_UNIQUE && se.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return "", false
	}
	msg := se.Error() // "constraint failed: UNIQUE constraint failed: <what> (2067)"
	what := msg[strings.LastIndex(msg, "constraint failed: ")+len("constraint failed: "):]
	what, _, _ = strings.Cut(what, " (")
	if name, ok := strings.CutPrefix(what, "index '"); ok {
		what = strings.TrimSuffix(name, "'")
	}
	return what, true
}

// down reports whether err means the database file cannot be used for
// now: I/O error, disk full, cannot open, locked by another process past
// the busy timeout, or the database closed.
func down(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	return errors.Is(err, sql.ErrConnDone)
}

// newConn takes a connection from db; SQLite runs in the process, so
// statements go one at a time.
func newConn(ctx context.Context, db *sql.DB) (*sqlstore.Conn, error) {
	p, err := sqlstore.NewSQLPipe(ctx, db)
	if err != nil {
		return nil, err
	}
	return sqlstore.NewConn(p, false), nil
}

// Update implements store.Store.
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	return db.batch.Update(ctx, fn)
}

// View implements store.Store.
func (db *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	var c *sqlstore.Conn
	select {
	case c = <-db.readers:
	case <-db.closed:
		return jit.Errorf(jit.EUnavailable, "store is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { db.readers <- c }()
	// The snapshot must end even if ctx did: roll back without it.
	bg := context.WithoutCancel(ctx)
	if _, err := c.Exec(bg, `BEGIN`); err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer c.Exec(bg, `ROLLBACK`)
	return fn(&sqlstore.SQLTx{Ctx: ctx, Q: c, Dialect: &db.dialect})
}

// Changes implements store.Store.
func (db *DB) Changes(ctx context.Context) <-chan string { return db.feed.Subscribe(ctx) }

// AuthGeneration implements store.Store.
func (db *DB) AuthGeneration() uint64 { return db.feed.AuthGeneration() }

// Lead implements store.Store: one server uses a SQLite database, so it
// leads at once, until ctx ends or the store closes.
func (db *DB) Lead(ctx context.Context, name string) (<-chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-db.closed:
		return nil, jit.Errorf(jit.EUnavailable, "store is closed")
	default:
	}
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		select {
		case <-ctx.Done():
		case <-db.closed:
		}
	}()
	return lost, nil
}

// Close stops the writer after the updates already queued and closes the
// database.
func (db *DB) Close() error {
	first := false
	db.once.Do(func() { first = true; close(db.closed) })
	if !first {
		return nil
	}
	var err error
	if db.batch != nil {
		err = db.batch.Close()
	}
	db.wg.Wait()
	return errors.Join(err, db.close())
}

func (db *DB) close() error {
	var errs []error
	for db.readers != nil && len(db.readers) > 0 {
		errs = append(errs, (<-db.readers).Close())
	}
	if db.conn != nil {
		errs = append(errs, db.conn.Close())
	}
	if db.checkpointer != nil {
		errs = append(errs, db.checkpointer.Close())
	}
	return errors.Join(append(errs, db.write.Close(), db.read.Close())...)
}

// checkpointEvery is how often the write-ahead log is copied into the
// database.
const checkpointEvery = 200 * time.Millisecond

// checkpoints copies the write-ahead log into the database every
// checkpointEvery until the store closes, beside the writer (a PASSIVE
// checkpoint waits for no one and no one waits for it). Under steady
// writes such a checkpoint never copies the whole log, and a log not
// wholly copied is never written over from its beginning: it would only
// grow. So the writer, between two batches, copies what is left
// (finishCheckpoint), and its next commit starts the log over.
func (db *DB) checkpoints() {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-db.closed:
			return
		case <-t.C:
		}
		db.ckMu.Lock()
		db.checkpoint()
		db.ckMu.Unlock()
		db.copied.Store(true)
	}
}

// finishCheckpoint copies what the last checkpoint left of the log; the
// writer calls it between batches, so nothing is added meanwhile. It
// skips rather than wait for a checkpoint under way.
func (db *DB) finishCheckpoint() {
	if db.copied.Load() && db.ckMu.TryLock() {
		db.copied.Store(false)
		db.checkpoint()
		db.ckMu.Unlock()
	}
}

// checkpoint runs a PASSIVE checkpoint; the caller holds ckMu. A failure
// is logged at most once a minute (checkpoints run five times a second).
func (db *DB) checkpoint() {
	var busy, frames, copied int
	err := db.checkpointer.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
	if err != nil && time.Since(db.ckLogged) >= time.Minute {
		db.ckLogged = time.Now()
		db.log.Warn("checkpoint the database's log", "err", err)
	}
}
