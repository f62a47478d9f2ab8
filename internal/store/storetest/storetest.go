// Package storetest is the compliance suite every store.Store must pass.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Run runs the suite; newStore returns an empty store, closed by the
// suite's cleanup or by the caller.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"GroupsAndVMs", testGroupsAndVMs},
		{"VMConflicts", testVMConflicts},
		{"Policies", testPolicies},
		{"Grants", testGrants},
		{"UsersTokensBindings", testUsersTokensBindings},
		{"AuthGeneration", testAuthGeneration},
		{"UserOrigin", testUserOrigin},
		{"ClaimMappings", testClaimMappings},
		{"RollbackLeavesNothing", testRollback},
		{"ConcurrentUpdatesIsolated", testConcurrentIsolation},
		{"FailedWritesAtUpdateEnd", testLateWriteFailure},
		{"UpdateGoingOnAfterItsError", testGoingOnAfterError},
		{"Closed", testClosed},
		{"EventChain", testEventChain},
		{"AppendSeveralEvents", testAppendSeveral},
		{"ArchiveEvents", testArchiveEvents},
		{"Changes", testChanges},
		{"Paging", testPaging},
		{"VMUsage", testVMUsage},
		{"PolicyApproval", testPolicyApproval},
		{"RequestStates", testRequestStates},
		{"Webhooks", testWebhooks},
		{"RequestKeys", testRequestKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// errReadOnly rolls back the updates that view runs its reads in.
var errReadOnly = errors.New("reads only")

// view runs fn's reads and checks twice: in a read transaction and inside
// an update (rolled back), since a store may read through other
// connections there.
func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("view: %v", err)
	}
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errReadOnly
	})
	if !errors.Is(err, errReadOnly) {
		t.Fatalf("reads inside an update: %v", err)
	}
}

func seedVM(t *testing.T, s store.Store, group, name string) jit.VM {
	t.Helper()
	vm := jit.VM{ID: "vm-" + group + "-" + name, Name: name, Group: group, Backend: jit.BackendAgent, OS: "linux",
		Addresses: []string{"198.51.100.10"}, Labels: map[string]string{"env": "test"}, CreatedAt: t0}
	update(t, s, func(tx store.Tx) error {
		if _, err := tx.GetGroup(group); jit.ErrorCode(err) == jit.ENotFound {
			if err := tx.CreateGroup(jit.Group{Name: group, CreatedAt: t0}); err != nil {
				return err
			}
		}
		return tx.CreateVM(&vm)
	})
	return vm
}

func testGroupsAndVMs(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "db-1")
	seedVM(t, s, "prod", "db-2")
	seedVM(t, s, "dev", "db-1")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateVM(&jit.VM{ID: "other", Name: "db-1", Group: "prod", Backend: "agent", CreatedAt: t0})
	})
	if jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("duplicate VM name: got %v, want conflict", err)
	}
	err = s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}) })
	if jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("duplicate group: got %v, want conflict", err)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetVM(vm.ID)
		if err != nil {
			return err
		}
		if got.Name != "db-1" || got.Group != "prod" || got.Labels["env"] != "test" || len(got.Addresses) != 1 || !got.CreatedAt.Equal(t0) || got.Revision != 1 {
			t.Errorf("GetVM = %+v", got)
		}
		all, err := tx.ListVMs(store.VMFilter{})
		if err != nil {
			return err
		}
		prod, err := tx.ListVMs(store.VMFilter{Group: "prod"})
		if err != nil {
			return err
		}
		none, err := tx.ListVMs(store.VMFilter{Groups: []string{}})
		if err != nil {
			return err
		}
		dev, err := tx.ListVMs(store.VMFilter{Groups: []string{"dev"}})
		if err != nil {
			return err
		}
		if len(all) != 3 || len(prod) != 2 || len(none) != 0 || len(dev) != 1 {
			t.Errorf("ListVMs: all %d prod %d none %d dev %d", len(all), len(prod), len(none), len(dev))
		}
		if _, err := tx.GetVM("missing"); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("GetVM missing: %v", err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		// Bumped twice in one transaction: the revision moves by one at
		// commit.
		if err := tx.BumpRevision(vm.ID); err != nil {
			return err
		}
		if err := tx.BumpRevision(vm.ID); err != nil {
			return err
		}
		return tx.SetReport(vm.ID, &jit.Report{Time: t0, AppliedRevision: 2, Enforceable: true, Listening: []jit.Socket{{Protocol: "TCP", Port: 22}}})
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetVM(vm.ID)
		if err != nil {
			return err
		}
		if got.Revision != 2 || got.Report == nil || got.Report.AppliedRevision != 2 || len(got.Report.Listening) != 1 {
			t.Errorf("after bump/report: %+v", got)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.DeleteVM(vm.ID) })
	err = s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteVM(vm.ID) })
	if jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("delete twice: %v", err)
	}
}

// testVMConflicts: a second VM with a taken name or external id is refused
// with the field that clashes.
func testVMConflicts(t *testing.T, s store.Store) {
	update(t, s, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "prod", CreatedAt: t0}) })
	mk := func(id, name, ext string) *jit.VM {
		return &jit.VM{ID: id, Name: name, Group: "prod", Backend: jit.BackendAzure, OS: "linux", ExternalID: ext, CreatedAt: t0}
	}
	update(t, s, func(tx store.Tx) error { return tx.CreateVM(mk("v1", "web", "/subscriptions/s/vm/web")) })
	for _, c := range []struct {
		vm     *jit.VM
		target string
	}{
		{mk("v2", "web", "/subscriptions/s/vm/other"), "name"},
		{mk("v3", "web-2", "/SUBSCRIPTIONS/S/VM/WEB"), "externalId"},
	} {
		err := s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateVM(c.vm) })
		if jit.ErrorCode(err) != jit.EConflict || jit.ErrorTarget(err) != c.target {
			t.Errorf("CreateVM(%s, %s) = %v (target %q), want a conflict on %s", c.vm.Name, c.vm.ExternalID, err, jit.ErrorTarget(err), c.target)
		}
	}
}

func testPolicies(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "web")
	p := jit.Policy{VMID: vm.ID, Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}},
		RequireJustification: true, UpdatedAt: t0, UpdatedBy: "admin"}
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.GetPolicy(vm.ID); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("no policy yet: %v", err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.PutPolicy(p) })
	p.Ports = append(p.Ports, jit.PortRule{Number: 3389, Protocol: "*", AllowedSourceAddressPrefixes: []string{"198.51.100.0/24"}, MaxRequestAccessDuration: "PT1H"})
	p.CreatedAt = t0.Add(-time.Hour)
	p.Written = []jit.PortRuleText{{Protocol: "tcp", AllowedSourceAddressPrefix: "*", MaxRequestAccessDuration: "PT3H"},
		{Protocol: "*", AllowedSourceAddressPrefixes: []string{"198.51.100.7/24"}, MaxRequestAccessDuration: "PT60M"}}
	update(t, s, func(tx store.Tx) error { return tx.PutPolicy(p) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetPolicy(vm.ID)
		if err != nil {
			return err
		}
		if len(got.Ports) != 2 || got.Ports[1].AllowedSourceAddressPrefixes[0] != "198.51.100.0/24" || !got.RequireJustification || got.UpdatedBy != "admin" {
			t.Errorf("GetPolicy = %+v", got)
		}
		if !got.CreatedAt.Equal(p.CreatedAt) || fmt.Sprintf("%q", got.Written) != fmt.Sprintf("%q", p.Written) {
			t.Errorf("GetPolicy: created %s, written %+v; want %s, %+v", got.CreatedAt, got.Written, p.CreatedAt, p.Written)
		}
		list, err := tx.ListPolicies(store.VMFilter{Group: "prod"})
		if err != nil || len(list) != 1 {
			t.Errorf("ListPolicies = %v, %v", list, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, pol, active, err := tx.GetVMAccess(vm.ID, "alice", []store.GrantTarget{{Port: 22, Source: "198.51.100.7/32"}})
		if err != nil || got.Name != "web" || pol == nil || len(pol.Ports) != 2 || pol.UpdatedBy != "admin" || len(active) != 0 {
			t.Errorf("GetVMAccess = %+v, %+v, %v, %v", got, pol, active, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.DeletePolicy(vm.ID) })
	view(t, s, func(tx store.Tx) error {
		got, pol, _, err := tx.GetVMAccess(vm.ID, "alice", nil)
		if err != nil || got.Name != "web" || pol != nil {
			t.Errorf("GetVMAccess without a policy = %+v, %+v, %v", got, pol, err)
		}
		if _, _, _, err := tx.GetVMAccess("missing", "alice", nil); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("GetVMAccess of a missing VM: %v", err)
		}
		return nil
	})
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeletePolicy(vm.ID) }); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("delete policy twice: %v", err)
	}
}

func testGrants(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "app")
	mk := func(id string, end time.Duration) jit.Grant {
		return jit.Grant{ID: id, RequestID: "r1", VMID: vm.ID, VMName: vm.Name, Group: vm.Group, Port: 22, Protocol: "TCP",
			Source: "198.51.100.7/32", User: "alice", StartTime: t0, EndTime: t0.Add(end), Status: jit.GrantActive}
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateRequest(jit.Request{ID: "r1", User: "alice", Address: "198.51.100.7", Justification: "fix", CreatedAt: t0}); err != nil {
			return err
		}
		for _, g := range []jit.Grant{mk("g1", time.Hour), mk("g2", time.Minute), mk("g3", 2*time.Hour)} {
			if err := tx.CreateGrant(g); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		next, ok, err := tx.NextGrantEnd()
		if err != nil || !ok || !next.Equal(t0.Add(time.Minute)) {
			t.Errorf("NextGrantEnd = %v %v %v", next, ok, err)
		}
		due, err := tx.ListGrants(store.GrantFilter{EndingBy: t0.Add(90 * time.Minute)})
		if err != nil || len(due) != 2 || due[0].ID != "g2" || due[1].ID != "g1" {
			t.Errorf("due grants = %+v, %v; want g2 then g1 (the first to end first)", due, err)
		}
		reqs, err := tx.ListRequests(store.RequestFilter{User: "alice"})
		if err != nil || len(reqs) != 1 || len(reqs[0].Grants) != 3 {
			t.Errorf("ListRequests = %+v, %v", reqs, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		ok, err := tx.EndGrant("g2", jit.GrantExpired, t0.Add(time.Minute), "system")
		if err != nil || !ok {
			return fmt.Errorf("end g2: %v %v", ok, err)
		}
		ok, err = tx.EndGrant("g2", jit.GrantRevoked, t0.Add(2*time.Minute), "bob")
		if err != nil || ok {
			return fmt.Errorf("end g2 twice: %v %v", ok, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		g, err := tx.GetGrant("g2")
		if err != nil {
			return err
		}
		if g.Status != jit.GrantExpired || g.EndedAt == nil || !g.EndedAt.Equal(t0.Add(time.Minute)) || g.EndedBy != "system" {
			t.Errorf("ended grant = %+v", g)
		}
		active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
		if err != nil || len(active) != 2 {
			t.Errorf("active = %d %v", len(active), err)
		}
		for _, c := range []struct {
			user    string
			targets []store.GrantTarget
			want    []string
		}{
			{"alice", []store.GrantTarget{{Port: 22, Source: "198.51.100.7/32"}}, []string{"g1", "g3"}},
			{"alice", []store.GrantTarget{{Port: 80, Source: "198.51.100.7/32"}, {Port: 22, Source: "198.51.100.7/32"}}, []string{"g1", "g3"}},
			{"alice", []store.GrantTarget{{Port: 22, Source: "198.51.100.8/32"}}, nil},
			{"alice", []store.GrantTarget{{Port: 80, Source: "198.51.100.7/32"}}, nil},
			{"bob", []store.GrantTarget{{Port: 22, Source: "198.51.100.7/32"}}, nil},
			{"alice", nil, nil},
		} {
			got, _, gs, err := tx.GetVMAccess(vm.ID, c.user, c.targets)
			var ids []string
			for _, g := range gs {
				ids = append(ids, g.ID)
				if g.Status != jit.GrantActive || g.VMID != vm.ID || g.Source != "198.51.100.7/32" || g.RequestID != "r1" {
					t.Errorf("GetVMAccess grant = %+v", g)
				}
			}
			slices.Sort(ids)
			if err != nil || got.ID != vm.ID || !slices.Equal(ids, c.want) {
				t.Errorf("GetVMAccess(%s, %v) = %s, %v, %v; want grants %v", c.user, c.targets, got.ID, ids, err, c.want)
			}
		}
		next, _, _ := tx.NextGrantEnd()
		if !next.Equal(t0.Add(time.Hour)) {
			t.Errorf("next end after expiry = %v", next)
		}
		return nil
	})
	// A grant shortens only while active, and only to an earlier end.
	update(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			id   string
			end  time.Duration
			want bool
		}{{"g3", 30 * time.Minute, true}, {"g3", 40 * time.Minute, false}, {"g3", 30 * time.Minute, false}, {"g2", 30 * time.Second, false}} {
			if ok, err := tx.ShortenGrant(c.id, t0.Add(c.end)); err != nil || ok != c.want {
				return fmt.Errorf("shorten %s to %v: %v %v, want %v", c.id, c.end, ok, err, c.want)
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		if g, err := tx.GetGrant("g3"); err != nil || !g.EndTime.Equal(t0.Add(30*time.Minute)) || g.Status != jit.GrantActive {
			t.Errorf("shortened grant = %+v %v", g, err)
		}
		if g, err := tx.GetGrant("g2"); err != nil || !g.EndTime.Equal(t0.Add(time.Minute)) {
			t.Errorf("ended grant after a shortening = %+v %v", g, err)
		}
		if next, _, _ := tx.NextGrantEnd(); !next.Equal(t0.Add(30 * time.Minute)) {
			t.Errorf("next end after shortening = %v", next)
		}
		return nil
	})
}

func testUsersTokensBindings(t *testing.T, s store.Store) {
	three := 3
	exp := t0.Add(time.Hour)
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateUser(jit.User{Name: "alice", CreatedAt: t0}, ""); err != nil {
			return err
		}
		if err := tx.CreateToken(jit.Token{ID: "t1", Kind: jit.TokenUser, User: "alice", CreatedAt: t0, Hash: []byte("h1")}); err != nil {
			return err
		}
		if err := tx.CreateToken(jit.Token{ID: "t2", Kind: jit.TokenEnroll, Group: "prod", CreatedAt: t0, ExpiresAt: &exp, UsesLeft: &three, Hash: []byte("h2")}); err != nil {
			return err
		}
		return tx.CreateRoleBinding(jit.RoleBinding{ID: "b1", User: "alice", Role: jit.RoleRequester, Group: "prod", CreatedAt: t0})
	})
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateUser(jit.User{Name: "alice", CreatedAt: t0}, "") }); jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("duplicate user: %v", err)
	}
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateRoleBinding(jit.RoleBinding{ID: "b2", User: "alice", Role: jit.RoleRequester, Group: "prod", CreatedAt: t0})
	}); jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("duplicate binding: %v", err)
	}
	update(t, s, func(tx store.Tx) error { return tx.SetPasswordHash("alice", "$argon2id$x") })
	view(t, s, func(tx store.Tx) error {
		u, hash, err := tx.GetUser("alice")
		if err != nil || !u.HasPassword || hash != "$argon2id$x" {
			t.Errorf("GetUser = %+v %q %v", u, hash, err)
		}
		tk, err := tx.TokenByHash([]byte("h2"))
		if err != nil || tk.ID != "t2" || tk.UsesLeft == nil || *tk.UsesLeft != 3 || tk.ExpiresAt == nil || !tk.ExpiresAt.Equal(exp) {
			t.Errorf("TokenByHash = %+v %v", tk, err)
		}
		if _, err := tx.TokenByHash([]byte("nope")); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("unknown token: %v", err)
		}
		b, err := tx.ListRoleBindings("alice")
		if err != nil || len(b) != 1 || b[0].Role != jit.RoleRequester {
			t.Errorf("bindings = %+v %v", b, err)
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		update(t, s, func(tx store.Tx) error { return tx.UseToken("t2") })
	}
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.UseToken("t2") }); jit.ErrorCode(err) != jit.EForbidden {
		t.Fatalf("fourth use of a 3-use token: %v", err)
	}
	update(t, s, func(tx store.Tx) error { return tx.DeleteUser("alice") })
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.TokenByHash([]byte("h1")); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("token of deleted user still there: %v", err)
		}
		return nil
	})
}

func testRollback(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.CreateGroup(jit.Group{Name: "ghost", CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.AppendEvent(&jit.Event{Time: t0, Actor: "x", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update error = %v, want boom", err)
	}
	err = s.Update(context.Background(), func(tx store.Tx) error { panic("kaboom") })
	if err == nil {
		t.Fatalf("a panicking update returned nil")
	}
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.GetGroup("ghost"); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("rolled-back group exists: %v", err)
		}
		ev, err := tx.ListEvents(store.EventFilter{})
		if err != nil || len(ev) != 0 {
			t.Errorf("rolled-back events: %d %v", len(ev), err)
		}
		return nil
	})
}

// testConcurrentIsolation runs failing and succeeding updates at once: the
// failures leave nothing behind and the successes all land.
func testConcurrentIsolation(t *testing.T, s store.Store) {
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(context.Background(), func(tx store.Tx) error {
				if err := tx.CreateGroup(jit.Group{Name: fmt.Sprintf("g%02d", i), CreatedAt: t0}); err != nil {
					return err
				}
				if err := tx.AppendEvent(&jit.Event{Time: t0, Actor: "x", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess}); err != nil {
					return err
				}
				if i%2 == 1 {
					return jit.Errorf(jit.EInvalid, "odd")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%2 == 1) != (err != nil) {
			t.Fatalf("update %d: err = %v", i, err)
		}
	}
	view(t, s, func(tx store.Tx) error {
		gs, err := tx.ListGroups()
		if err != nil || len(gs) != n/2 {
			t.Errorf("groups = %d, want %d (%v)", len(gs), n/2, err)
		}
		for _, g := range gs {
			var i int
			fmt.Sscanf(g.Name, "g%d", &i)
			if i%2 == 1 {
				t.Errorf("group %s of a failed update exists", g.Name)
			}
		}
		return verify(t, tx, n/2)
	})
}

// testLateWriteFailure runs concurrent updates whose inserts fail only in
// the database (a grant id taken already), where an adapter may learn of
// the failure only when it sends the update's writes at its end: each such
// update reports the conflict and leaves nothing, the others all land, and
// a read inside an update sees the writes made before it.
func testLateWriteFailure(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "app")
	grant := func(id, req string) jit.Grant {
		return jit.Grant{ID: id, RequestID: req, VMID: vm.ID, VMName: vm.Name, Group: vm.Group, Port: 22, Protocol: "TCP",
			Source: "198.51.100.7/32", User: "alice", StartTime: t0, EndTime: t0.Add(time.Hour), Status: jit.GrantActive}
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateRequest(jit.Request{ID: "r-taken", User: "alice", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateGrant(grant("taken", "r-taken"))
	})
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(tx store.Tx) error {
				req := fmt.Sprintf("r%02d", i)
				if err := tx.CreateRequest(jit.Request{ID: req, User: "alice", CreatedAt: t0}); err != nil {
					return err
				}
				id := fmt.Sprintf("g%02d", i)
				if i%2 == 1 {
					id = "taken"
				}
				if err := tx.CreateGrant(grant(id, req)); err != nil {
					return err
				}
				if i%4 == 0 { // read after write, in the same update
					g, err := tx.GetGrant(id)
					if err != nil {
						return fmt.Errorf("read own grant: %w", err)
					}
					if g.RequestID != req {
						return fmt.Errorf("read own grant: request %q, want %q", g.RequestID, req)
					}
				}
				return tx.AppendEvent(&jit.Event{Time: t0, Actor: "x", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess})
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			if jit.ErrorCode(err) != jit.EConflict {
				t.Errorf("update %d reusing a grant id: err = %v, want a conflict", i, err)
			}
		} else if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	view(t, s, func(tx store.Tx) error {
		reqs, err := tx.ListRequests(store.RequestFilter{User: "alice"})
		if err != nil {
			return err
		}
		if len(reqs) != 1+n/2 {
			t.Errorf("requests = %d, want %d", len(reqs), 1+n/2)
		}
		for _, r := range reqs {
			var i int
			if _, err := fmt.Sscanf(r.ID, "r%d", &i); err == nil && i%2 == 1 {
				t.Errorf("request %s of a failed update exists", r.ID)
			}
		}
		g, err := tx.GetGrant("taken")
		if err != nil || g.RequestID != "r-taken" {
			t.Errorf("grant taken = %+v, %v", g, err)
		}
		active, err := tx.ListGrants(store.GrantFilter{VMID: vm.ID, Status: jit.GrantActive})
		if err != nil || len(active) != 1+n/2 {
			t.Errorf("active grants = %d, want %d (%v)", len(active), 1+n/2, err)
		}
		return verify(t, tx, n/2)
	})
}

// inOneBatch runs fns as concurrent updates queued in order behind one that
// holds the writer, so that a store that batches runs them together, and
// returns their errors.
func inOneBatch(t *testing.T, s store.Store, fns ...func(store.Tx) error) []error {
	t.Helper()
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s.Update(context.Background(), func(tx store.Tx) error { close(held); <-hold; return nil })
	})
	<-held
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Go(func() { errs[i] = s.Update(context.Background(), fn) })
		time.Sleep(30 * time.Millisecond) // queue them in order
	}
	close(hold)
	wg.Wait()
	return errs
}

// testGoingOnAfterError: an update that ignores a database error of its
// own and goes on reading and writing fails alone; the updates around it
// commit.
func testGoingOnAfterError(t *testing.T, s store.Store) {
	update(t, s, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "taken", CreatedAt: t0}) })
	errs := inOneBatch(t, s,
		func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "a", CreatedAt: t0}) },
		func(tx store.Tx) error {
			tx.CreateGroup(jit.Group{Name: "taken", CreatedAt: t0}) // a conflict, ignored
			tx.CreateRequest(jit.Request{ID: "r-b", User: "b", CreatedAt: t0})
			_, err := tx.ListGroups()
			if err != nil {
				return nil // ignored too: the store must still fail this update
			}
			return tx.CreateGroup(jit.Group{Name: "b", CreatedAt: t0})
		},
		func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "c", CreatedAt: t0}) },
	)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("updates around the failing one: %v, %v", errs[0], errs[2])
	}
	view(t, s, func(tx store.Tx) error {
		for _, name := range []string{"a", "c"} {
			if _, err := tx.GetGroup(name); err != nil {
				t.Errorf("group %s: %v", name, err)
			}
		}
		if errs[1] != nil {
			if _, err := tx.GetGroup("b"); err == nil {
				t.Errorf("group b of a failed update exists")
			}
			if reqs, _ := tx.ListRequests(store.RequestFilter{User: "b"}); len(reqs) != 0 {
				t.Errorf("the request of a failed update exists")
			}
		}
		return nil
	})
}

// testClosed: once the store is closed, updates and reads fail at once.
func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- s.Update(context.Background(), func(store.Tx) error { return nil }) }()
	go func() { done <- s.View(context.Background(), func(store.Tx) error { return nil }) }()
	for range 2 {
		select {
		case err := <-done:
			if jit.ErrorCode(err) != jit.EUnavailable {
				t.Errorf("after Close: %v, want unavailable", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("an update or read after Close did not return")
		}
	}
}

func verify(t *testing.T, tx store.Tx, want int64) error {
	t.Helper()
	var v jit.ChainVerifier
	if err := tx.WalkEvents(v.Add); err != nil {
		return err
	}
	if v.BadSeq != 0 || v.Events != want {
		t.Errorf("chain: events %d (want %d), bad %d: %s", v.Events, want, v.BadSeq, v.Problem)
	}
	return nil
}

func testEventChain(t *testing.T, s store.Store) {
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Update(context.Background(), func(tx store.Tx) error {
				d, _ := json.Marshal(map[string]int{"i": i})
				return tx.AppendEvent(&jit.Event{Time: t0.Add(time.Duration(i) * time.Second), Actor: fmt.Sprintf("user%d", i%3),
					VMID: fmt.Sprintf("vm%d", i%5), Group: "prod", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess, Details: d})
			})
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	view(t, s, func(tx store.Tx) error {
		if err := verify(t, tx, n); err != nil {
			return err
		}
		byVM, err := tx.ListEvents(store.EventFilter{VMID: "vm1"})
		if err != nil || len(byVM) != n/5 {
			t.Errorf("events of vm1 = %d %v", len(byVM), err)
		}
		page, err := tx.ListEvents(store.EventFilter{Limit: 10, AfterSeq: 100})
		if err != nil || len(page) != 10 || page[0].Seq != 101 {
			t.Errorf("page after 100 = %d events, first %v, %v", len(page), page, err)
		}
		window, err := tx.ListEvents(store.EventFilter{Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)})
		if err != nil || len(window) != 10 {
			t.Errorf("time window = %d %v", len(window), err)
		}
		ones, err := tx.ListEvents(store.EventFilter{ActorPrefix: "user1"})
		if want := (n + 1) / 3; err != nil || len(ones) != want {
			t.Errorf("events of actors starting user1 = %d %v, want %d", len(ones), err, want)
		}
		all, err := tx.ListEvents(store.EventFilter{ActorPrefix: "use"})
		if err != nil || len(all) != n {
			t.Errorf("events of actors starting use = %d %v, want %d", len(all), err, n)
		}
		return nil
	})
}

func testChanges(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "watched")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Changes(ctx)
	_ = s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.BumpRevision(vm.ID); err != nil {
			return err
		}
		return errors.New("rolled back")
	})
	update(t, s, func(tx store.Tx) error { return tx.BumpRevision(vm.ID) })
	select {
	case id := <-ch:
		if id != vm.ID && id != store.AllVMs {
			t.Fatalf("change for %q, want %q", id, vm.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change delivered within 5s")
	}
	select {
	case id := <-ch:
		t.Fatalf("extra change %q (the rolled-back bump must not be delivered)", id)
	case <-time.After(200 * time.Millisecond):
	}
}

// testAppendSeveral appends several events in one call, mixed with single
// appends and a rolled-back update, and checks order and chain.
func testAppendSeveral(t *testing.T, s store.Store) {
	ev := func(actor string) *jit.Event {
		return &jit.Event{Time: t0, Actor: actor, Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess}
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.AppendEvent(ev("a")); err != nil {
			return err
		}
		return tx.AppendEvent(ev("b"), ev("c"), ev("d"))
	})
	_ = s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.AppendEvent(ev("x"), ev("y")); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	update(t, s, func(tx store.Tx) error { return tx.AppendEvent(ev("e"), ev("f")) })
	view(t, s, func(tx store.Tx) error {
		all, err := tx.ListEvents(store.EventFilter{})
		if err != nil {
			return err
		}
		var actors string
		for i, e := range all {
			actors += e.Actor
			if e.Seq != int64(i+1) {
				t.Errorf("event %d has seq %d", i, e.Seq)
			}
		}
		if actors != "abcdef" {
			t.Errorf("events in the log: %q, want abcdef", actors)
		}
		return verify(t, tx, 6)
	})
}

// testAuthGeneration: every write that may change how a token
// authenticates moves the generation on before its Update returns; other
// writes need not.
func testAuthGeneration(t *testing.T, s store.Store) {
	vm := seedVM(t, s, "prod", "web")
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateUser(jit.User{Name: "alice", CreatedAt: t0}, ""); err != nil {
			return err
		}
		for _, id := range []string{"t1", "t2"} {
			if err := tx.CreateToken(jit.Token{ID: id, Kind: jit.TokenUser, User: "alice", CreatedAt: t0, Hash: []byte("h" + id)}); err != nil {
				return err
			}
		}
		return nil
	})
	changes := []struct {
		name string
		fn   func(store.Tx) error
	}{
		{"a role binding made", func(tx store.Tx) error {
			return tx.CreateRoleBinding(jit.RoleBinding{ID: "b1", User: "alice", Role: jit.RoleRequester, Group: "prod", CreatedAt: t0})
		}},
		{"a role binding removed", func(tx store.Tx) error { return tx.DeleteRoleBinding("b1") }},
		{"a token deleted", func(tx store.Tx) error { return tx.DeleteToken("t1") }},
		{"a VM (and its agent's token) deleted", func(tx store.Tx) error { return tx.DeleteVM(vm.ID) }},
		{"a user deleted", func(tx store.Tx) error { return tx.DeleteUser("alice") }},
	}
	for _, c := range changes {
		before := s.AuthGeneration()
		update(t, s, c.fn)
		if after := s.AuthGeneration(); after == before {
			t.Errorf("%s: the authentication generation stayed %d", c.name, after)
		}
	}
}

// testArchiveEvents archives part of the log, then all of it, and checks
// that the checkpoint is kept, a wrong or gone event is refused without
// change, and the next event continues the checkpoint even when the log
// was left empty.
func testArchiveEvents(t *testing.T, s store.Store) {
	ev := func(actor string) *jit.Event {
		return &jit.Event{Time: t0, Actor: actor, Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess}
	}
	update(t, s, func(tx store.Tx) error { return tx.AppendEvent(ev("a"), ev("b"), ev("c"), ev("d")) })
	var all []jit.Event
	view(t, s, func(tx store.Tx) error {
		var err error
		all, err = tx.ListEvents(store.EventFilter{})
		if _, ok, cerr := tx.LogCheckpoint(); cerr != nil || ok {
			t.Errorf("a new log has a checkpoint (%v)", cerr)
		}
		return err
	})
	anchor := func(e jit.Event) jit.Anchor { return jit.Anchor{Seq: e.Seq, Hash: e.Hash} }
	archive := func(a jit.Anchor) (int64, error) {
		var n int64
		err := s.Update(context.Background(), func(tx store.Tx) error {
			var err error
			n, err = tx.ArchiveEvents(a, t0, "test")
			return err
		})
		return n, err
	}
	if _, err := archive(jit.Anchor{Seq: 2, Hash: all[0].Hash}); jit.ErrorCode(err) != jit.EConflict {
		t.Errorf("archive with a wrong hash: %v, want a conflict", err)
	}
	if n, err := archive(anchor(all[1])); err != nil || n != 2 {
		t.Fatalf("archive through 2: %d %v", n, err)
	}
	if _, err := archive(anchor(all[1])); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("archive of archived events: %v, want not found", err)
	}
	view(t, s, func(tx store.Tx) error {
		cp, ok, err := tx.LogCheckpoint()
		if err != nil || !ok || cp != anchor(all[1]) {
			t.Errorf("checkpoint %v %v %v, want %v", cp, ok, err, anchor(all[1]))
		}
		left, err := tx.ListEvents(store.EventFilter{})
		if len(left) != 2 || left[0].Seq != 3 {
			t.Errorf("left in the log: %+v", left)
		}
		return err
	})
	// Everything: the next event still continues the chain.
	if n, err := archive(anchor(all[3])); err != nil || n != 2 {
		t.Fatalf("archive through 4: %d %v", n, err)
	}
	update(t, s, func(tx store.Tx) error { return tx.AppendEvent(ev("e")) })
	view(t, s, func(tx store.Tx) error {
		left, err := tx.ListEvents(store.EventFilter{})
		if len(left) != 1 || left[0].Seq != 5 || left[0].PrevHash != all[3].Hash {
			t.Errorf("after archiving everything, the next event is %+v, want seq 5 after %s", left, all[3].Hash)
		}
		cp, _, _ := tx.LogCheckpoint()
		if cp != anchor(all[3]) {
			t.Errorf("checkpoint %v, want the last archived event", cp)
		}
		return err
	})
}

func testRequestKeys(t *testing.T, s store.Store) {
	t0 := time.Unix(1700000000, 0).UTC()
	update(t, s, func(tx store.Tx) error { return tx.PutRequestKey("alice", "k-1", "hash-a", "req-1", t0) })
	update(t, s, func(tx store.Tx) error { return tx.PutRequestKey("bob", "k-1", "hash-b", "req-2", t0) })
	err := s.Update(context.Background(), func(tx store.Tx) error { return tx.PutRequestKey("alice", "k-1", "hash-c", "req-3", t0) })
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(err.Error(), "k-1") {
		t.Errorf("alice's key used twice: %v, want a conflict naming the key", err)
	}
	view(t, s, func(tx store.Tx) error {
		if h, id, err := tx.GetRequestKey("alice", "k-1"); err != nil || h != "hash-a" || id != "req-1" {
			t.Errorf("alice's k-1 = %q %q %v", h, id, err)
		}
		if h, id, err := tx.GetRequestKey("bob", "k-1"); err != nil || h != "hash-b" || id != "req-2" {
			t.Errorf("bob's k-1 = %q %q %v", h, id, err)
		}
		if _, _, err := tx.GetRequestKey("alice", "k-2"); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("an unused key: %v, want not found", err)
		}
		return nil
	})
}
