package sqlite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlstore"
)

// planner is a Querier that records SQLite's plan of every query it runs.
type planner struct {
	*sqlstore.Conn
	plans []string
}

func (p *planner) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rows, err := p.Conn.Query(ctx, "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return nil, err
	}
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			rows.Close()
			return nil, err
		}
		plan = append(plan, detail)
	}
	rows.Close()
	p.plans = append(p.plans, strings.Join(plan, "; "))
	return p.Conn.Query(ctx, q, args...)
}

// The expirer's reads (the next end, the grants due) are index ranges
// over the active grants by end time, not a read of every active grant.
func TestExpirerReadsByIndex(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	err = db.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		vm := jit.VM{ID: "vm1", Name: "vm1", Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0}
		if err := tx.CreateVM(&vm); err != nil {
			return err
		}
		if err := tx.CreateRequest(jit.Request{ID: "r1", User: "alice", Address: "198.51.100.7", CreatedAt: t0}); err != nil {
			return err
		}
		for i := range 200 {
			status := jit.GrantActive
			if i%2 == 0 {
				status = jit.GrantExpired
			}
			g := jit.Grant{ID: fmt.Sprintf("g%03d", i), RequestID: "r1", VMID: "vm1", VMName: "vm1", Group: "prod", Port: 22, Protocol: "TCP",
				Source: "198.51.100.7/32", User: "alice", StartTime: t0.Add(time.Duration(i) * time.Second), EndTime: t0.Add(time.Hour + time.Duration(200-i)*time.Second), Status: status}
			if err := tx.CreateGrant(g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := <-db.readers
	defer func() { db.readers <- c }()
	p := &planner{Conn: c}
	tx := &sqlstore.SQLTx{Ctx: ctx, Q: p, Dialect: &db.dialect}
	next, ok, err := tx.NextGrantEnd()
	if err != nil || !ok || !next.Equal(t0.Add(time.Hour+time.Second)) {
		t.Fatalf("NextGrantEnd = %v %v %v", next, ok, err)
	}
	due, err := tx.ListGrants(store.GrantFilter{EndingBy: t0.Add(time.Hour + 10*time.Second), Limit: 100})
	if err != nil || len(due) != 5 || due[0].ID != "g199" {
		t.Fatalf("due grants: %d %v, first %+v", len(due), err, due)
	}
	for _, plan := range p.plans {
		if !strings.Contains(plan, "grants_active_end") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("plan %q: want a range of grants_active_end, unsorted", plan)
		}
	}
}

// One user's active grants are a range of the index of active grants by
// user, not a walk over every active grant: the first page of a user's
// "My access" must not grow with everybody else's grants.
func TestUserActiveGrantsByIndex(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	err = db.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}); err != nil {
			return err
		}
		vm := jit.VM{ID: "vm1", Name: "vm1", Group: "prod", Backend: jit.BackendAgent, OS: "linux", CreatedAt: t0}
		if err := tx.CreateVM(&vm); err != nil {
			return err
		}
		for i := range 300 {
			user, status := fmt.Sprintf("user%02d", i%30), jit.GrantActive
			if i%7 == 0 {
				status = jit.GrantExpired
			}
			rid := fmt.Sprintf("r%03d", i)
			if err := tx.CreateRequest(jit.Request{ID: rid, User: user, Address: "198.51.100.7", CreatedAt: t0}); err != nil {
				return err
			}
			g := jit.Grant{ID: fmt.Sprintf("g%03d", i), RequestID: rid, VMID: "vm1", VMName: "vm1", Group: "prod", Port: 22, Protocol: "TCP",
				Source: "198.51.100.7/32", User: user, StartTime: t0.Add(time.Duration(i) * time.Second), EndTime: t0.Add(time.Hour), Status: status}
			if err := tx.CreateGrant(g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := <-db.readers
	defer func() { db.readers <- c }()
	p := &planner{Conn: c}
	tx := &sqlstore.SQLTx{Ctx: ctx, Q: p, Dialect: &db.dialect}
	got, err := tx.ListGrants(store.GrantFilter{User: "user07", Status: jit.GrantActive, Groups: []string{"prod"}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range got {
		if g.User != "user07" || g.Status != jit.GrantActive {
			t.Errorf("grant %+v in user07's active grants", g)
		}
		ids = append(ids, g.ID)
	}
	if want := []string{"g277", "g247", "g187", "g157", "g127", "g097", "g067", "g037"}; !slices.Equal(ids, want) {
		t.Errorf("user07's active grants, newest first: %v, want %v", ids, want)
	}
	for _, plan := range p.plans {
		if !strings.Contains(plan, "grants_active_user") {
			t.Errorf("plan %q: want a range of grants_active_user", plan)
		}
	}
}
