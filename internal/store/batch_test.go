package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
)

// fakePipe runs nothing: it answers every statement with success, except
// those starting with failOn, whose failure it reports at their index.
type fakePipe struct {
	mu     sync.Mutex
	failOn string
	sent   []string
}

func (p *fakePipe) run(stmts []Stmt) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range stmts {
		p.sent = append(p.sent, s.Query)
		if p.failOn != "" && strings.HasPrefix(s.Query, p.failOn) {
			return i, errors.New("boom: " + s.Query)
		}
	}
	return len(stmts), nil
}

func (p *fakePipe) Exec(_ context.Context, stmts []Stmt) (int64, int, error) {
	ran, err := p.run(stmts)
	return 1, ran, err
}

type noRows struct{}

func (noRows) Next() bool        { return false }
func (noRows) Scan(...any) error { return errors.New("no row") }
func (noRows) Err() error        { return nil }
func (noRows) Close() error      { return nil }
func (p *fakePipe) Closed() bool { return false }
func (p *fakePipe) Close() error { return nil }
func (p *fakePipe) Query(_ context.Context, stmts []Stmt, q string, _ []any) (Rows, int, error) {
	ran, err := p.run(append(stmts, Stmt{Query: q}))
	if err != nil {
		return nil, ran, err
	}
	return noRows{}, len(stmts), nil
}

// TestCommitOutcome: when the COMMIT itself fails, an update is told that
// whether it took effect is unknown; when a statement before it fails, it
// is told it failed.
func TestCommitOutcome(t *testing.T) {
	for _, c := range []struct {
		failOn  string
		unknown bool
	}{
		{"COMMIT", true},
		{"INSERT INTO events", false},
	} {
		p := &fakePipe{failOn: c.failOn}
		b := NewBatcher(func(context.Context) (*Conn, error) { return NewConn(p), nil },
			&Dialect{Begin: []Stmt{{Query: "BEGIN"}}}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		err := b.Update(context.Background(), func(tx Tx) error {
			return tx.AppendEvent(&jit.Event{Actor: "x", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess})
		})
		b.Close()
		if err == nil {
			t.Fatalf("failing %s: the update succeeded", c.failOn)
		}
		unknown := jit.ErrorCode(err) == jit.EUnavailable && strings.Contains(err.Error(), "unknown")
		if unknown != c.unknown {
			t.Errorf("failing %s: %v (outcome unknown: %v, want %v)", c.failOn, err, unknown, c.unknown)
		}
	}
}
