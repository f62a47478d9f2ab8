package apitest

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// dbPath is the SQLite file of s.
func dbPath(t *testing.T, s *ajardtest.Server) string {
	p, ok := strings.CutPrefix(s.DB, "sqlite:")
	if !ok {
		t.Fatalf("not a SQLite server: %s", s.DB)
	}
	return p
}

// tamper stops s, runs stmts on its database and starts it again.
func tamper(t *testing.T, s *ajardtest.Server, stmts ...string) {
	t.Helper()
	s.Stop()
	db, err := sql.Open("sqlite", "file:"+dbPath(t, s))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		r, err := db.Exec(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if n, _ := r.RowsAffected(); n != 1 {
			t.Fatalf("%s changed %d rows, want 1", q, n)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
}

// TestTamperedLog edits the activity log in the database behind the
// server's back and checks that verify finds the first bad event.
func TestTamperedLog(t *testing.T) {
	t.Parallel()
	// setup fills a fresh server's log and returns a middle event.
	setup := func(t *testing.T) (*ajardtest.Server, jit.Event) {
		s := start(t)
		group(t, s, "prod")
		v := vm(t, s.Admin, "prod", "web-1")
		policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
		g := request(t, s.Admin, v.ID, port(22, "PT10M")).Grants[0]
		must[jit.Grant](t)(s.Admin.Revoke(t.Context(), g.ID))
		wantVerified(t, s)
		es := events(t, s, client.EventQuery{})
		if len(es) < 6 {
			t.Fatalf("only %d events", len(es))
		}
		return s, es[len(es)/2]
	}
	wantBad := func(t *testing.T, s *ajardtest.Server, seq int64, problem string) {
		t.Helper()
		v := verify(t, s)
		if v.OK || v.FirstBadEvent == nil || *v.FirstBadEvent != seq || !strings.Contains(v.Problem, problem) {
			bad := int64(0)
			if v.FirstBadEvent != nil {
				bad = *v.FirstBadEvent
			}
			t.Errorf("verify = ok %v firstBadEvent %d problem %q, want not ok at %d (%s)", v.OK, bad, v.Problem, seq, problem)
		}
	}

	t.Run("edited details", func(t *testing.T) {
		t.Parallel()
		s, e := setup(t)
		tamper(t, s, `UPDATE events SET details = '{"tampered":true}' WHERE seq = `+itoa(e.Seq))
		wantBad(t, s, e.Seq, "does not match its hash")
	})
	t.Run("edited actor", func(t *testing.T) {
		t.Parallel()
		s, e := setup(t)
		tamper(t, s, `UPDATE events SET actor = 'mallory' WHERE seq = `+itoa(e.Seq))
		wantBad(t, s, e.Seq, "does not match its hash")
	})
	t.Run("deleted middle event", func(t *testing.T) {
		t.Parallel()
		s, e := setup(t)
		tamper(t, s, `DELETE FROM events WHERE seq = `+itoa(e.Seq))
		wantBad(t, s, e.Seq, "missing")
	})
	t.Run("edited with its hash recomputed", func(t *testing.T) {
		t.Parallel()
		s, e := setup(t)
		e.Actor = "mallory"
		tamper(t, s, `UPDATE events SET actor = 'mallory', hash = '`+e.ComputeHash()+`' WHERE seq = `+itoa(e.Seq))
		wantBad(t, s, e.Seq+1, "previous-hash link")
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
