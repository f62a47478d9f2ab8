package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// testUserOrigin: a user provisioned by an OpenID provider keeps its
// origin; a local user has none.
func testUserOrigin(t *testing.T, s store.Store) {
	const issuer = "https://login.example.com/tenant"
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateUser(jit.User{Name: "sso-olga", CreatedAt: t0, Origin: issuer}, ""); err != nil {
			return err
		}
		return tx.CreateUser(jit.User{Name: "local-lars", CreatedAt: t0}, "")
	})
	view(t, s, func(tx store.Tx) error {
		u, _, err := tx.GetUser("sso-olga")
		if err != nil || u.Origin != issuer {
			t.Errorf("GetUser(sso-olga) = %+v, %v; want origin %s", u, err, issuer)
		}
		u, _, err = tx.GetUser("local-lars")
		if err != nil || u.Origin != "" {
			t.Errorf("GetUser(local-lars) = %+v, %v; want no origin", u, err)
		}
		users, err := tx.ListUsers(store.UserFilter{})
		if err != nil {
			return err
		}
		i := slices.IndexFunc(users, func(u jit.User) bool { return u.Name == "sso-olga" })
		if i < 0 || users[i].Origin != issuer {
			t.Errorf("ListUsers: sso-olga %+v", users)
		}
		return nil
	})
}

// testClaimMappings: mappings are created, listed, refused twice, and
// deleted.
func testClaimMappings(t *testing.T, s store.Store) {
	m := jit.ClaimMapping{ID: "m1", Claim: "groups", Value: "ops-admins", Role: jit.RoleAdmin, Group: "prod", CreatedAt: t0}
	update(t, s, func(tx store.Tx) error { return tx.CreateClaimMapping(m) })
	dup := m
	dup.ID = "m2"
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateClaimMapping(dup) }); jit.ErrorCode(err) != jit.EConflict {
		t.Fatalf("duplicate mapping: %v, want conflict", err)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListClaimMappings()
		if err != nil || len(got) != 1 || got[0] != m {
			t.Errorf("ListClaimMappings = %+v, %v; want [%+v]", got, err, m)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.DeleteClaimMapping("m1") })
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteClaimMapping("m1") }); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("deleting a deleted mapping: %v, want not found", err)
	}
}
