package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// FleetSize is the fleet of the fleet test and benchmark.
const FleetSize = 10000

// startFleet starts ajard with FleetSize machines in groups of 1,000
// (fleet-0 .. fleet-9), written straight into its database while it is
// stopped: a third with JIT enabled, a third whose agent reports them
// enforceable (not configured; every other one with SSH listening), a
// third never connected (unsupported). admin's console password is
// adminPassword.
func startFleet(tb testing.TB) *ajardtest.Server {
	tb.Helper()
	s := ajardtest.Start(tb, ajardtest.Options{})
	if _, err := s.Admin.SetPassword(context.Background(), "admin", "", adminPassword); err != nil {
		tb.Fatal(err)
	}
	s.Stop()
	db, err := sqlite.Open(context.Background(), filepath.Join(s.Dir, "ajar.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	err = db.Update(context.Background(), func(tx store.Tx) error {
		for g := range FleetSize / 1000 {
			if err := tx.CreateGroup(jit.Group{Name: fmt.Sprintf("fleet-%d", g), CreatedAt: now}); err != nil {
				return err
			}
		}
		for i := range FleetSize {
			vm := jit.VM{ID: fmt.Sprintf("vm%05d", i), Name: fmt.Sprintf("vm-%05d", i), Group: fmt.Sprintf("fleet-%d", i/1000), Backend: jit.BackendAgent, OS: "linux",
				Addresses: []string{fmt.Sprintf("198.51.100.%d", i%250+1)}, CreatedAt: now}
			if err := tx.CreateVM(&vm); err != nil {
				return err
			}
			switch i % 3 {
			case 0:
				if err := tx.PutPolicy(jit.Policy{VMID: vm.ID, Ports: []jit.PortRule{{Number: 22, Protocol: jit.ProtoTCP, AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}},
					UpdatedAt: now, UpdatedBy: "admin", CreatedAt: now}); err != nil {
					return err
				}
			case 1:
				r := jit.Report{Time: now.Add(time.Hour), Enforceable: true} // fresh for the test's length
				if i%2 == 0 {
					r.Listening = []jit.Socket{{Protocol: "TCP", Port: 22}}
				}
				if err := tx.SetReport(vm.ID, &r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	s.Restart()
	return s
}

var rowName = regexp.MustCompile(`<tr data-vm="([^"]+)"`)

func rowNames(body string) []string {
	var out []string
	for _, m := range rowName.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

var nextLink = regexp.MustCompile(`<a href="([^"]+)" id="page-next"`)

// TestFleet pages, sorts and searches the machine tabs of 10,000
// machines, and finds a machine for the activity filter by name.
func TestFleet(t *testing.T) {
	s := startFleet(t)
	u := newHTTPUser(t, s.URL)
	u.signIn("admin", adminPassword)
	page := func(path string) (string, string) {
		t.Helper()
		st, _, body := u.get(path)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, st, body)
		}
		next := ""
		if m := nextLink.FindStringSubmatch(body); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		return body, next
	}
	body, next := page("/machines?tab=configured")
	first := rowNames(body)
	if len(first) != 50 || first[0] != "vm-00000" || first[1] != "vm-00003" || next == "" {
		t.Fatalf("first page of Configured: %d rows %v, next %q", len(first), first[:min(3, len(first))], next)
	}
	body, _ = page(next)
	if second := rowNames(body); len(second) != 50 || second[0] != "vm-00150" || !strings.Contains(body, `id="page-prev"`) {
		t.Errorf("second page of Configured starts %v, want vm-00150 and a Previous link", second[:min(1, len(second))])
	}
	body, next = page("/machines?tab=configured&sort=desc")
	if got := rowNames(body); len(got) != 50 || got[0] != "vm-09999" || got[1] != "vm-09996" {
		t.Errorf("Configured sorted Z to A starts %v, want vm-09999, vm-09996", got[:min(2, len(got))])
	}
	body, _ = page(next)
	if got := rowNames(body); len(got) != 50 || got[0] != "vm-09849" {
		t.Errorf("second page sorted Z to A starts %v, want vm-09849", got[:min(1, len(got))])
	}
	body, _ = page("/machines?tab=not-configured&group=fleet-3")
	if got := rowNames(body); len(got) != 50 || !strings.Contains(body, "Unhealthy") {
		t.Errorf("Not configured in fleet-3: %d rows", len(got))
	}
	body, _ = page("/machines?tab=unsupported&q=vm-07778")
	if got := rowNames(body); !slices.Equal(got, []string{"vm-07778"}) {
		t.Errorf("search vm-07778 on Unsupported lists %v", got)
	}
	// The activity filter takes a machine's name.
	body, _ = page("/activity?vm=vm-00042")
	if !strings.Contains(body, `value="vm-00042"`) || strings.Contains(body, `id="vm-choices"`) || strings.Contains(body, "No machine matches") {
		t.Errorf("activity filtered by a machine's name does not find it:\n%s", body)
	}
	body, _ = page("/activity?vm=vm-0004")
	if !strings.Contains(body, `id="vm-choices"`) || strings.Count(body, `href="/activity?vm=vm`) != 10 {
		t.Errorf("activity filtered by the start of 10 machines' names does not offer them")
	}
}

// BenchmarkMachinesPage10k times one page of each machine tab, and a
// search, with 10,000 machines.
func BenchmarkMachinesPage10k(b *testing.B) {
	s := startFleet(b)
	u := newHTTPUser(b, s.URL)
	u.signIn("admin", adminPassword)
	for _, path := range []string{"/machines?tab=configured", "/machines?tab=not-configured", "/machines?tab=unsupported", "/machines?tab=unsupported&q=vm-07778", "/activity?vm=vm-04242"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			for b.Loop() {
				if st, _, _ := u.get(path); st != http.StatusOK {
					b.Fatalf("GET %s: %d", path, st)
				}
			}
		})
	}
}
