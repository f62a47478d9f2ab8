package server_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// listServer is an API over a fresh store, with the store at hand to
// fill quickly.
type listServer struct {
	url, token string
	db         store.Store
}

func newListServer(t *testing.T, db store.Store) *listServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctl := control.New(db, log, time.Now)
	secret, err := ctl.Bootstrap(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server.New(ctl, log, nil))
	t.Cleanup(hs.Close)
	return &listServer{url: hs.URL, token: secret, db: db}
}

// stores runs fn against SQLite, and PostgreSQL when AJAR_TEST_POSTGRES
// names a server.
func stores(t *testing.T, fn func(t *testing.T, s *listServer)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ajar.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, newListServer(t, db))
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, newListServer(t, db))
	})
}

func (s *listServer) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b
}

// appendEvents appends n events in updates of 1,000.
func appendEvents(t *testing.T, db store.Store, n int) {
	t.Helper()
	if err := writeEvents(db, n); err != nil {
		t.Fatal(err)
	}
}

func writeEvents(db store.Store, n int) error {
	for done := 0; done < n; {
		k := min(1000, n-done)
		err := db.Update(context.Background(), func(tx store.Tx) error {
			evs := make([]*jit.Event, k)
			for i := range evs {
				evs[i] = &jit.Event{Time: time.Now(), Actor: "loader", Operation: jit.OpSignIn, Outcome: jit.OutcomeSuccess,
					Details: json.RawMessage(fmt.Sprintf(`{"n":%d}`, done+i))}
			}
			return tx.AppendEvent(evs...)
		})
		if err != nil {
			return err
		}
		done += k
	}
	return nil
}

func eventCount(t *testing.T, db store.Store) int64 {
	t.Helper()
	var head int64
	err := db.View(context.Background(), func(tx store.Tx) error {
		evs, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
		if len(evs) == 1 {
			head = evs[0].Seq
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return head
}

// TestExportEveryEvent: the CSV and JSON lines exports return every event
// of a log longer than any page (they stopped at the oldest 10,000).
func TestExportEveryEvent(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		appendEvents(t, s.db, 10_050)
		want := eventCount(t, s.db)

		st, body := s.get(t, "/api/v1/activity?format=csv")
		if st != http.StatusOK {
			t.Fatalf("csv: %d %s", st, body)
		}
		recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(len(recs) - 1); got != want {
			t.Errorf("csv export: %d events, want %d", got, want)
		}
		for i, r := range recs[1:] {
			if r[0] != fmt.Sprint(i+1) {
				t.Fatalf("csv row %d has seq %s", i+1, r[0])
			}
		}

		st, body = s.get(t, "/api/v1/activity?format=jsonl&after=5")
		if st != http.StatusOK {
			t.Fatalf("jsonl: %d %s", st, body)
		}
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		sc.Buffer(nil, 1<<20)
		n, prev := int64(0), int64(5)
		for sc.Scan() {
			var e jit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			if e.Seq != prev+1 {
				t.Fatalf("jsonl: seq %d after %d", e.Seq, prev)
			}
			prev = e.Seq
			n++
		}
		if n != want-5 {
			t.Errorf("jsonl export after 5: %d events, want %d", n, want-5)
		}

		// A limit on an export is how many to send, past any page size.
		st, body = s.get(t, "/api/v1/activity?format=csv&limit=10020&operation="+jit.OpSignIn)
		if st != http.StatusOK {
			t.Fatalf("csv with limit: %d %s", st, body)
		}
		if rows := strings.Count(string(body), "\n") - 1; rows != 10_020 {
			t.Errorf("csv with limit 10020: %d rows", rows)
		}
	})
}

// TestListLimits: a page larger than a list's maximum, or a cursor the
// list did not hand out, is a 400 naming the parameter.
func TestListLimits(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		for _, c := range []struct{ path, target, message string }{
			{"/api/v1/vms?limit=1001", "limit", "1000"},
			{"/api/v1/vms?limit=0", "limit", "1000"},
			{"/api/v1/grants?limit=10001", "limit", "10000"},
			{"/api/v1/requests?limit=10001", "limit", "10000"},
			{"/api/v1/activity?limit=10001", "limit", "10000"},
			{"/api/v1/users?limit=10001", "limit", "10000"},
			{"/api/v1/tokens?limit=10001", "limit", "10000"},
			{"/api/v1/users?cursor=x", "cursor", "cursor"},
			{"/api/v1/vms?cursor=bm9wZQ", "cursor", "cursor"},
			{"/api/v1/grants?cursor=" + url.QueryEscape("!!"), "cursor", "cursor"},
			{"/api/v1/activity?cursor=WyJ2bXMiLCJhIiwiYiIsZmFsc2Vd", "cursor", "cursor"}, // a VM list's cursor
			{"/api/v1/activity?format=csv&cursor=x", "cursor", "after"},
		} {
			st, body := s.get(t, c.path)
			var eb httpio.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || st != http.StatusBadRequest || eb.Error.Target != c.target || !strings.Contains(eb.Error.Message, c.message) {
				t.Errorf("GET %s: %d %s; want 400 naming %s and %q", c.path, st, body, c.target, c.message)
			}
		}
	})
}

// page is a list response.
type page[T any] struct {
	Value []T    `json:"value"`
	Next  string `json:"next"`
}

// follow reads a list page by page (at most 1,000 pages) and returns the
// keys of its items.
func follow[T any](t *testing.T, s *listServer, path string, key func(T) string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for range 1000 {
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		st, body := s.get(t, p)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, st, body)
		}
		var pg page[T]
		if err := json.Unmarshal(body, &pg); err != nil {
			t.Fatal(err)
		}
		for _, v := range pg.Value {
			keys = append(keys, key(v))
		}
		if pg.Next == "" {
			return keys
		}
		cursor = pg.Next
	}
	t.Fatalf("%s: more than 1,000 pages", path)
	return nil
}

// TestPagingUnderInserts: paging through VMs, grants, requests and events
// while more are written returns every item that was there before exactly
// once, and no item twice.
func TestPagingUnderInserts(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		ctx := context.Background()
		now := time.Now()
		seed := func(prefix string, n int) error {
			return s.db.Update(ctx, func(tx store.Tx) error {
				if _, err := tx.GetGroup("g"); jit.ErrorCode(err) == jit.ENotFound {
					if err := tx.CreateGroup(jit.Group{Name: "g", CreatedAt: now}); err != nil {
						return err
					}
				}
				for i := range n {
					id := fmt.Sprintf("%s-%03d", prefix, i)
					if err := tx.CreateVM(&jit.VM{ID: id, Name: id, Group: "g", Backend: jit.BackendAgent, OS: "linux", CreatedAt: now}); err != nil {
						return err
					}
					// Every three share a start time, to page through ties.
					at := now.Add(-time.Duration(i/3) * time.Second)
					if err := tx.CreateRequest(jit.Request{ID: "r" + id, User: "admin", Address: "198.51.100.7", CreatedAt: at}); err != nil {
						return err
					}
					if err := tx.CreateGrant(jit.Grant{ID: "g" + id, RequestID: "r" + id, VMID: id, VMName: id, Group: "g", Port: 22, Protocol: "TCP",
						Source: "198.51.100.7/32", User: "admin", StartTime: at, EndTime: at.Add(time.Hour), Status: jit.GrantActive}); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := seed("b", 200); err != nil {
			t.Fatal(err)
		}
		appendEvents(t, s.db, 300)
		before := eventCount(t, s.db)

		// Writers add VMs sorting before, among and after the seeded ones,
		// newer grants and requests, and events, while the lists are read.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var werr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50 && werr == nil; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if werr = seed(fmt.Sprintf("%c%02d", "abc"[i%3], i), 2); werr == nil {
					werr = writeEvents(s.db, 5)
				}
			}
		}()
		lists := map[string][]string{
			"vms":      follow(t, s, "/api/v1/vms?limit=7", func(v jit.VMView) string { return v.ID }),
			"grants":   follow(t, s, "/api/v1/grants?limit=7", func(g jit.Grant) string { return g.ID }),
			"requests": follow(t, s, "/api/v1/requests?limit=7", func(r jit.Request) string { return r.ID }),
			"activity": follow(t, s, "/api/v1/activity?limit=7", func(e jit.Event) string { return fmt.Sprint(e.Seq) }),
		}
		close(stop)
		wg.Wait()
		if werr != nil {
			t.Fatalf("concurrent writes: %v", werr)
		}
		for name, keys := range lists {
			seen := map[string]int{}
			for _, k := range keys {
				seen[k]++
			}
			for k, n := range seen {
				if n > 1 {
					t.Errorf("%s: %s listed %d times", name, k, n)
				}
			}
			for i := range 200 {
				k := map[string]string{"vms": "", "grants": "g", "requests": "r"}[name] + fmt.Sprintf("b-%03d", i)
				if name == "activity" {
					if int64(i) >= before {
						break
					}
					k = fmt.Sprint(i + 1)
				}
				if seen[k] != 1 {
					t.Errorf("%s: %s listed %d times, want once", name, k, seen[k])
				}
			}
		}
	})
}

// TestShortListsPage: groups and role bindings, which the store answers
// whole, still page with a limit and a cursor, every item exactly once.
func TestShortListsPage(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		now := time.Now().UTC()
		var wantGroups, wantBindings []string
		if err := s.db.Update(t.Context(), func(tx store.Tx) error {
			for i := range 7 {
				name := fmt.Sprintf("grp-%d", i)
				if err := tx.CreateGroup(jit.Group{Name: name, CreatedAt: now}); err != nil {
					return err
				}
				wantGroups = append(wantGroups, name)
				b := jit.RoleBinding{ID: fmt.Sprintf("rb-%d", i), User: "admin", Role: jit.RoleReader, Group: name, CreatedAt: now}
				if err := tx.CreateRoleBinding(b); err != nil {
					return err
				}
				wantBindings = append(wantBindings, b.ID)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var first page[jit.Group]
		if st, body := s.get(t, "/api/v1/groups?limit=2"); st != http.StatusOK || json.Unmarshal(body, &first) != nil || len(first.Value) != 2 || first.Next == "" {
			t.Fatalf("first page of groups: %d %s; want 2 groups and a next cursor", st, body)
		}
		groups := follow(t, s, "/api/v1/groups?limit=2", func(g jit.Group) string { return g.Name })
		if !slices.Equal(groups, wantGroups) {
			t.Errorf("groups in pages of 2: %v, want %v", groups, wantGroups)
		}
		var got []string
		for _, id := range follow(t, s, "/api/v1/rolebindings?user=admin&limit=2", func(b jit.RoleBinding) string { return b.ID }) {
			if strings.HasPrefix(id, "rb-") {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, wantBindings) {
			t.Errorf("role bindings in pages of 2: %v, want %v", got, wantBindings)
		}
		for _, path := range []string{"/api/v1/groups?limit=10001", "/api/v1/rolebindings?limit=10001", "/api/v1/groups?cursor=x"} {
			if st, body := s.get(t, path); st != http.StatusBadRequest {
				t.Errorf("GET %s: %d %s, want 400", path, st, body)
			}
		}
	})
}
