package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// fakePipe runs nothing: it answers every statement with success, except
// those starting with failOn, whose failure it reports at their index; a
// query for a transaction's id answers "42" and one for its status answers
// status.
type fakePipe struct {
	mu     sync.Mutex
	failOn string
	// failures, when not 0, is how many times failOn fails.
	failures int
	status   string
	sent     []string
}

func (p *fakePipe) run(stmts []Stmt) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range stmts {
		p.sent = append(p.sent, s.Query)
		if p.failOn != "" && strings.HasPrefix(s.Query, p.failOn) {
			if p.failures--; p.failures == 0 {
				p.failOn = ""
			}
			return i, errors.New("boom: " + s.Query)
		}
	}
	return len(stmts), nil
}

func (p *fakePipe) Exec(_ context.Context, stmts []Stmt) (int64, int, error) {
	ran, err := p.run(stmts)
	return 1, ran, err
}

// oneRow is a result of one text column, or none when empty.
type oneRow struct {
	v    string
	read bool
}

func (r *oneRow) Next() bool {
	ok := r.v != "" && !r.read
	r.read = true
	return ok
}

func (r *oneRow) Scan(dest ...any) error {
	switch d := dest[0].(type) {
	case *string:
		*d = r.v
	case *sql.NullString:
		*d = sql.NullString{String: r.v, Valid: true}
	default:
		return errors.New("fake rows scan text only")
	}
	return nil
}

func (r *oneRow) Err() error   { return nil }
func (r *oneRow) Close() error { return nil }

func (p *fakePipe) Closed() bool { return false }
func (p *fakePipe) Close() error { return nil }
func (p *fakePipe) Query(_ context.Context, stmts []Stmt, q string, _ []any) (Rows, int, error) {
	ran, err := p.run(append(stmts, Stmt{Query: q}))
	if err != nil {
		return nil, ran, err
	}
	switch q {
	case "TXID":
		return &oneRow{v: "42"}, len(stmts), nil
	case "STATUS":
		return &oneRow{v: p.status}, len(stmts), nil
	}
	return &oneRow{}, len(stmts), nil
}

// TestCommitOutcome: when the commit's pipeline fails, the transaction's
// fate is looked up where the database can tell: an update is told it
// succeeded when it committed and that it failed when it did not; where
// the database cannot tell, a failed COMMIT leaves the outcome unknown
// and a failure before it is a failure.
func TestCommitOutcome(t *testing.T) {
	for _, c := range []struct {
		failOn, status string
		lookup         bool
		want           string // "ok", "failed", "unknown"
	}{
		{failOn: "COMMIT", want: "unknown"},
		{failOn: "COMMIT", lookup: true, status: "committed", want: "ok"},
		{failOn: "COMMIT", lookup: true, status: "aborted", want: "failed"},
		{failOn: "INSERT INTO events", want: "failed"},
		{failOn: "INSERT INTO events", lookup: true, status: "aborted", want: "failed"},
		// A lost answer can show on an earlier statement of the pipeline:
		// the database's word decides.
		{failOn: "INSERT INTO events", lookup: true, status: "committed", want: "ok"},
	} {
		p := &fakePipe{failOn: c.failOn, status: c.status}
		d := &Dialect{Begin: []Stmt{{Query: "BEGIN"}}}
		if c.lookup {
			d.TxID, d.TxStatus = "TXID", "STATUS"
		}
		b := NewBatcher(func(context.Context) (*Conn, error) { return NewConn(p, true), nil }, d, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		err := b.Update(context.Background(), func(tx store.Tx) error {
			return tx.AppendEvent(&jit.Event{Actor: "x", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess})
		})
		b.Close()
		got := "failed"
		switch {
		case err == nil:
			got = "ok"
		case jit.ErrorCode(err) == jit.EUnavailable && strings.Contains(err.Error(), "unknown"):
			got = "unknown"
		}
		if got != c.want {
			t.Errorf("failing %s, status %q: %v (%s), want %s", c.failOn, c.status, err, got, c.want)
		}
	}
}

// TestRetry: a batch the database gave up on (here: its events' insert
// failed with an error the dialect says to retry) runs again and then
// commits; fn ran once per try.
func TestRetry(t *testing.T) {
	p := &fakePipe{failOn: "INSERT INTO events", failures: 1}
	d := &Dialect{Begin: []Stmt{{Query: "BEGIN"}}, ChainLock: []Stmt{{Query: "LOCK"}},
		Retry: func(err error) bool { return strings.Contains(err.Error(), "boom") }}
	b := NewBatcher(func(context.Context) (*Conn, error) { return NewConn(p, true), nil }, d, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runs := 0
	err := b.Update(context.Background(), func(tx store.Tx) error {
		runs++
		return tx.AppendEvent(&jit.Event{Actor: "x", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess})
	})
	b.Close()
	if err != nil || runs != 2 {
		t.Fatalf("update: %v after %d runs, want success after 2", err, runs)
	}
	sent := strings.Join(p.sent, "; ")
	if strings.Count(sent, "BEGIN; LOCK") != 2 || strings.Count(sent, "COMMIT") != 1 {
		t.Errorf("statements: %s", sent)
	}
}
