package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// testPaging: VMs, grants, requests and events page by their sort keys,
// each item exactly once, whatever the page size, ties included.
func testPaging(t *testing.T, s store.Store) {
	var vmIDs []string
	for _, g := range []string{"a", "b"} {
		for i := range 7 {
			vmIDs = append(vmIDs, seedVM(t, s, g, fmt.Sprintf("vm-%02d", i)).ID)
		}
	}
	update(t, s, func(tx store.Tx) error {
		for _, id := range vmIDs[:5] {
			if err := tx.PutPolicy(jit.Policy{VMID: id, Ports: []jit.PortRule{{Number: 22, Protocol: "TCP"}}, UpdatedAt: t0, UpdatedBy: "x"}); err != nil {
				return err
			}
		}
		// Five users and five tokens, two created at the same time.
		for i := range 5 {
			if err := tx.CreateUser(jit.User{Name: fmt.Sprintf("u%d", i), CreatedAt: t0}, ""); err != nil {
				return err
			}
			if err := tx.CreateToken(jit.Token{ID: fmt.Sprintf("t%d", i), Hash: []byte(fmt.Sprintf("h%d", i)), Kind: jit.TokenUser,
				User: fmt.Sprintf("u%d", i/2), CreatedAt: t0.Add(time.Duration(i/2) * time.Second)}); err != nil {
				return err
			}
		}
		// Twelve requests and grants, several sharing a time, to page
		// through ties.
		for i := range 12 {
			at := t0.Add(time.Duration(i/3) * time.Minute)
			rid := fmt.Sprintf("r%02d", i)
			if err := tx.CreateRequest(jit.Request{ID: rid, User: "alice", Address: "198.51.100.7", CreatedAt: at}); err != nil {
				return err
			}
			if err := tx.CreateGrant(jit.Grant{ID: fmt.Sprintf("g%02d", i), RequestID: rid, VMID: vmIDs[0], VMName: "vm-00", Group: "a", Port: 22,
				Protocol: "TCP", Source: "198.51.100.7/32", User: "alice", StartTime: at, EndTime: at.Add(time.Hour), Status: jit.GrantActive}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		for _, size := range []int{1, 3, 5, 100} {
			var got []string
			f := store.VMFilter{Limit: size}
			for range 20 {
				page, err := tx.ListVMs(f)
				if err != nil {
					return err
				}
				for _, vm := range page {
					got = append(got, vm.ID)
				}
				if len(page) < size {
					break
				}
				f.AfterGroup, f.AfterName = page[len(page)-1].Group, page[len(page)-1].Name
			}
			if !slices.Equal(got, vmIDs) {
				t.Errorf("VMs in pages of %d: %v, want %v", size, got, vmIDs)
			}
			// Backwards from the end.
			got = nil
			f = store.VMFilter{Limit: size, Desc: true, AfterGroup: "c"}
			for range 20 {
				page, err := tx.ListVMs(f)
				if err != nil {
					return err
				}
				for _, vm := range page {
					got = append(got, vm.ID)
				}
				if len(page) < size {
					break
				}
				f.AfterGroup, f.AfterName = page[len(page)-1].Group, page[len(page)-1].Name
			}
			slices.Reverse(got)
			if !slices.Equal(got, vmIDs) {
				t.Errorf("VMs backwards in pages of %d: %v, want %v", size, got, vmIDs)
			}

			var grants, reqs []string
			gf := store.GrantFilter{Limit: size}
			rf := store.RequestFilter{User: "alice", Limit: size}
			for range 20 {
				page, err := tx.ListGrants(gf)
				if err != nil {
					return err
				}
				for _, g := range page {
					grants = append(grants, g.ID)
				}
				if len(page) < size {
					break
				}
				gf.BeforeStart, gf.BeforeID = page[len(page)-1].StartTime, page[len(page)-1].ID
			}
			for range 20 {
				page, err := tx.ListRequests(rf)
				if err != nil {
					return err
				}
				for _, r := range page {
					reqs = append(reqs, r.ID)
					if len(r.Grants) != 1 || r.Grants[0].RequestID != r.ID {
						t.Errorf("request %s grants: %+v", r.ID, r.Grants)
					}
				}
				if len(page) < size {
					break
				}
				rf.BeforeCreated, rf.BeforeID = page[len(page)-1].CreatedAt, page[len(page)-1].ID
			}
			// Newest first; equal times by id.
			want := []string{"09", "10", "11", "06", "07", "08", "03", "04", "05", "00", "01", "02"}
			var wantG, wantR []string
			for _, w := range want {
				wantG, wantR = append(wantG, "g"+w), append(wantR, "r"+w)
			}
			if !slices.Equal(grants, wantG) || !slices.Equal(reqs, wantR) {
				t.Errorf("pages of %d: grants %v requests %v, want %v and %v", size, grants, reqs, wantG, wantR)
			}
		}
		var users, tokens []string
		uf := store.UserFilter{Limit: 2}
		tf := store.TokenFilter{Limit: 2}
		for range 20 {
			page, err := tx.ListUsers(uf)
			if err != nil {
				return err
			}
			for _, u := range page {
				users = append(users, u.Name)
			}
			if len(page) < uf.Limit {
				break
			}
			uf.After = page[len(page)-1].Name
		}
		for range 20 {
			page, err := tx.ListTokens(tf)
			if err != nil {
				return err
			}
			for _, tk := range page {
				tokens = append(tokens, tk.ID)
			}
			if len(page) < tf.Limit {
				break
			}
			tf.AfterCreated, tf.AfterID = page[len(page)-1].CreatedAt, page[len(page)-1].ID
		}
		if !slices.Equal(users, []string{"u0", "u1", "u2", "u3", "u4"}) || !slices.Equal(tokens, []string{"t0", "t1", "t2", "t3", "t4"}) {
			t.Errorf("users in pages of 2: %v; tokens: %v", users, tokens)
		}
		mine, err := tx.ListTokens(store.TokenFilter{User: "u1"})
		if err != nil || len(mine) != 2 {
			t.Errorf("tokens of u1: %v %v", mine, err)
		}
		with, err := tx.ListVMs(store.VMFilter{Policy: store.WithPolicy})
		if err != nil {
			return err
		}
		without, err := tx.ListVMs(store.VMFilter{Policy: store.WithoutPolicy, Group: "a"})
		if err != nil {
			return err
		}
		byID, err := tx.ListVMs(store.VMFilter{IDs: []string{vmIDs[3], vmIDs[9]}})
		if err != nil {
			return err
		}
		pols, err := tx.ListPolicies(store.VMFilter{IDs: []string{vmIDs[3], vmIDs[9]}})
		if err != nil {
			return err
		}
		if len(with) != 5 || len(without) != 2 || len(byID) != 2 || len(pols) != 1 || pols[0].VMID != vmIDs[3] {
			t.Errorf("with policy %d, without in a %d, by id %d, policies by id %+v", len(with), len(without), len(byID), pols)
		}
		return nil
	})
}

// testVMUsage: a VM's usage figures come from its own grants only.
func testVMUsage(t *testing.T, s store.Store) {
	busy := seedVM(t, s, "prod", "busy")
	idle := seedVM(t, s, "prod", "idle")
	now := t0.Add(10 * 24 * time.Hour)
	update(t, s, func(tx store.Tx) error {
		for i, c := range []struct {
			req, user, status string
			start             time.Time
			end               time.Duration
		}{
			{"old", "carol", jit.GrantExpired, now.Add(-8 * 24 * time.Hour), time.Hour}, // outside 7 days
			{"r1", "alice", jit.GrantExpired, now.Add(-3 * time.Hour), time.Hour},
			{"r1", "alice", jit.GrantExpired, now.Add(-3 * time.Hour), time.Hour}, // same request, second port
			{"r2", "bob", jit.GrantActive, now.Add(-time.Hour), 2 * time.Hour},
			{"r3", "dave", jit.GrantActive, now.Add(-30 * time.Minute), 10 * time.Minute}, // ended by time, not yet swept
		} {
			err := tx.CreateGrant(jit.Grant{ID: fmt.Sprintf("u%d", i), RequestID: c.req, VMID: busy.ID, VMName: busy.Name, Group: busy.Group, Port: 22 + i,
				Protocol: "TCP", Source: "198.51.100.7/32", User: c.user, StartTime: c.start, EndTime: c.start.Add(c.end), Status: c.status})
			if err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		u, err := tx.VMUsage([]string{busy.ID, idle.ID, "missing"}, now.Add(-7*24*time.Hour), now)
		if err != nil {
			return err
		}
		b := u[busy.ID]
		if b.Approved != 3 || b.ActiveGrants != 1 || b.LastAccess == nil || !b.LastAccess.Equal(now.Add(-30*time.Minute)) || b.LastUser != "dave" {
			t.Errorf("busy usage = %+v", b)
		}
		if i := u[idle.ID]; i.Approved != 0 || i.ActiveGrants != 0 || i.LastAccess != nil || i.LastUser != "" {
			t.Errorf("idle usage = %+v", i)
		}
		return nil
	})
}
