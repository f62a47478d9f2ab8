package control

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Claim mappings give the users an OpenID provider vouches for roles from
// their claims (`ajar role map --claim groups=ops-admins --role jit-admin
// --group prod`). They are evaluated at every sign-in through the
// provider: the bindings they gave and the claims no longer support are
// removed, with the grants those roles allowed (followRoles); bindings an
// admin made by hand are left alone.

// claimBindingPrefix marks the role bindings claim mappings made.
const claimBindingPrefix = "claim-"

// Bounds of a claim mapping's fields.
const (
	MaxClaimName  = 64
	MaxClaimValue = 256
)

// CreateClaimMapping adds a mapping (admins only).
func (c *Control) CreateClaimMapping(ctx context.Context, a *Actor, m jit.ClaimMapping) (jit.ClaimMapping, error) {
	if err := a.require(jit.PermAdmin, "", "manage claim mappings"); err != nil {
		return m, err
	}
	switch {
	case m.Claim == "" || len(m.Claim) > MaxClaimName || strings.ContainsAny(m.Claim, " \t\r\n"):
		return m, jit.Invalid("claim", "the claim name must be 1 to %d characters without spaces, such as groups", MaxClaimName)
	case m.Value == "" || len(m.Value) > MaxClaimValue || !jit.Storable(m.Value):
		return m, jit.Invalid("value", "the claim value must be 1 to %d characters of text", MaxClaimValue)
	}
	if err := jit.ValidRole(m.Role); err != nil {
		return m, jit.Invalid("role", "%v", err)
	}
	if m.Group == "" {
		return m, jit.Invalid("group", `group is required ("*" for all groups)`)
	}
	m.ID, m.CreatedAt = NewID(), c.Now()
	return m, c.store.Update(ctx, func(tx store.Tx) error {
		if m.Group != jit.AllGroups {
			if _, err := tx.GetGroup(m.Group); err != nil {
				return targeted(err, "group")
			}
		}
		if err := tx.CreateClaimMapping(m); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpClaimMappingCreate, jit.OutcomeSuccess, nil, m))
	})
}

// ListClaimMappings lists the mappings (admins only).
func (c *Control) ListClaimMappings(ctx context.Context, a *Actor) ([]jit.ClaimMapping, error) {
	if err := a.require(jit.PermAdmin, "", "list claim mappings"); err != nil {
		return nil, err
	}
	var out []jit.ClaimMapping
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListClaimMappings()
		return err
	})
	return out, err
}

// DeleteClaimMapping removes a mapping (admins only). The roles it gave
// go at each user's next sign-in through the provider.
func (c *Control) DeleteClaimMapping(ctx context.Context, a *Actor, id string) error {
	if err := a.require(jit.PermAdmin, "", "manage claim mappings"); err != nil {
		return err
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteClaimMapping(id); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpClaimMappingDelete, jit.OutcomeSuccess, nil, map[string]string{"mapping": id}))
	})
}

// applyClaims makes user's claim-given role bindings what the mappings
// and claims say: missing ones are made, ones no longer supported are
// removed and the grants they allowed end. Each change is logged with
// via "claims". It returns the user's bindings after.
func (c *Control) applyClaims(tx store.Tx, a *Actor, user string, claims map[string][]string) ([]jit.RoleBinding, error) {
	maps, err := tx.ListClaimMappings()
	if err != nil {
		return nil, err
	}
	type rg struct{ role, group string }
	want := map[rg]jit.ClaimMapping{}
	for _, m := range maps {
		if slices.Contains(claims[m.Claim], m.Value) {
			want[rg{m.Role, m.Group}] = m
		}
	}
	have, err := tx.ListRoleBindings(user)
	if err != nil {
		return nil, err
	}
	var keep, removed []jit.RoleBinding
	held := map[rg]bool{}
	for _, b := range have {
		k := rg{b.Role, b.Group}
		if strings.HasPrefix(b.ID, claimBindingPrefix) {
			if _, ok := want[k]; !ok {
				removed = append(removed, b)
				continue
			}
		}
		held[k] = true
		keep = append(keep, b)
	}
	now := c.Now()
	for k, m := range want {
		if held[k] {
			continue
		}
		if k.group != jit.AllGroups {
			if _, err := tx.GetGroup(k.group); jit.ErrorCode(err) == jit.ENotFound {
				continue // the group went since the mapping was made
			} else if err != nil {
				return nil, err
			}
		}
		b := jit.RoleBinding{ID: claimBindingPrefix + NewID(), User: user, Role: k.role, Group: k.group, CreatedAt: now}
		if err := tx.CreateRoleBinding(b); err != nil {
			return nil, err
		}
		if err := tx.AppendEvent(c.event(a, jit.OpRoleBindingCreate, jit.OutcomeSuccess, nil, map[string]any{
			"binding": b.ID, "user": user, "role": b.Role, "group": b.Group, "via": "claims", "claim": m.Claim, "value": m.Value, "mapping": m.ID})); err != nil {
			return nil, err
		}
		keep = append(keep, b)
	}
	for _, b := range removed {
		if err := tx.DeleteRoleBinding(b.ID); err != nil {
			return nil, err
		}
		if err := tx.AppendEvent(c.event(a, jit.OpRoleBindingDelete, jit.OutcomeSuccess, nil, map[string]any{
			"binding": b.ID, "user": user, "role": b.Role, "group": b.Group, "via": "claims", "reason": "the provider's claims no longer map to it"})); err != nil {
			return nil, err
		}
	}
	for _, b := range removed {
		why := fmt.Sprintf("role %s of %s in group %s removed: the provider's claims no longer map to it", b.Role, user, b.Group)
		if _, err := c.followRoles(tx, a, user, keep, why, roleChange{Operation: jit.OpRoleBindingDelete, Binding: b}); err != nil {
			return nil, err
		}
	}
	return keep, nil
}
