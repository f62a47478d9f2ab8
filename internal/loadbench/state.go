package loadbench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// State is the size of a large state for Generate.
type State struct {
	VMs          int // in groups of 100, each with a JIT policy on port 22
	ActiveGrants int // spread evenly over the VMs, one request each
	Events       int // activity events, sign-ins of a few users
}

// Scale is the state issue 15 measures lists against: 10,000 VMs, 100,000
// active grants, 1,000,000 events.
var Scale = State{VMs: 10_000, ActiveGrants: 100_000, Events: 1_000_000}

// Generate writes st into s through the store, in updates of a few
// thousand rows, as if ajard had run for a while: VMs named vm-00000... in
// groups g-000..., grants active until an hour after now (started within
// the last six days, so they count as approved in 7 days) and events in
// the last week. It returns the ids of the VMs.
func Generate(ctx context.Context, s store.Store, st State, now time.Time) ([]string, error) {
	ids := make([]string, st.VMs)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%05d", i)
	}
	rule := []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"}}
	const vmBatch = 1000
	for lo := 0; lo < st.VMs; lo += vmBatch {
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+vmBatch, st.VMs); i++ {
				group := fmt.Sprintf("g-%03d", i/100)
				if i%100 == 0 {
					if err := tx.CreateGroup(jit.Group{Name: group, CreatedAt: now}); err != nil {
						return err
					}
				}
				vm := jit.VM{ID: ids[i], Name: ids[i], Group: group, Backend: jit.BackendAgent, OS: "linux",
					Addresses: []string{fmt.Sprintf("198.51.%d.%d", 100+i/250%2, i%250+1)}, CreatedAt: now}
				if err := tx.CreateVM(&vm); err != nil {
					return err
				}
				if err := tx.PutPolicy(jit.Policy{VMID: vm.ID, Ports: rule, UpdatedAt: now, UpdatedBy: "loadbench"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("generate VMs: %w", err)
		}
	}
	const grantBatch = 2000
	for lo := 0; lo < st.ActiveGrants && st.VMs > 0; lo += grantBatch {
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+grantBatch, st.ActiveGrants); i++ {
				vm := i % st.VMs
				start := now.Add(-time.Duration(i) * 6 * 24 * time.Hour / time.Duration(max(st.ActiveGrants, 1)))
				user := fmt.Sprintf("user-%03d", i%500)
				rid, gid := fmt.Sprintf("req-%07d", i), fmt.Sprintf("grant-%07d", i)
				src := fmt.Sprintf("203.0.113.%d/32", i%250+1)
				if err := tx.CreateRequest(jit.Request{ID: rid, User: user, Address: src[:len(src)-3], Justification: "load", CreatedAt: start}); err != nil {
					return err
				}
				if err := tx.CreateGrant(jit.Grant{ID: gid, RequestID: rid, VMID: ids[vm], VMName: ids[vm], Group: fmt.Sprintf("g-%03d", vm/100),
					Port: 22, Protocol: "TCP", Source: src, User: user, StartTime: start, EndTime: now.Add(time.Hour), Status: jit.GrantActive}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("generate grants: %w", err)
		}
	}
	const eventBatch = 5000
	for lo := 0; lo < st.Events; lo += eventBatch {
		err := s.Update(ctx, func(tx store.Tx) error {
			evs := make([]*jit.Event, 0, eventBatch)
			for i := lo; i < min(lo+eventBatch, st.Events); i++ {
				e := &jit.Event{Time: now.Add(-7 * 24 * time.Hour).Add(time.Duration(i) * 7 * 24 * time.Hour / time.Duration(st.Events)),
					Actor: fmt.Sprintf("user-%03d", i%500), ActorAddress: "198.51.100.7", Operation: jit.OpSignIn, Outcome: jit.OutcomeSuccess,
					Details: json.RawMessage(`{"via":"loadbench"}`)}
				if st.VMs > 0 && i%4 == 0 {
					vm := i % st.VMs
					e.VMID, e.Group, e.Operation = ids[vm], fmt.Sprintf("g-%03d", vm/100), jit.OpGrantOpen
				}
				evs = append(evs, e)
			}
			return tx.AppendEvent(evs...)
		})
		if err != nil {
			return nil, fmt.Errorf("generate events: %w", err)
		}
	}
	return ids, nil
}
