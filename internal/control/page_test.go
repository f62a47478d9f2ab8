package control_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestListVMsPages: a tab pages forward and back through the VMs it holds
// (classified in chunks), each once, with the usage figures of each.
func TestListVMsPages(t *testing.T) {
	ctl, clk, admin, dbVM := setup(t) // prod/db-7 has a policy
	ctx := context.Background()
	var configured, other []string
	configured = append(configured, dbVM.ID)
	for i := range 23 {
		vm, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: fmt.Sprintf("vm-%02d", i), Group: "prod"})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := ctl.PutPolicy(ctx, admin, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
				t.Fatal(err)
			}
			configured = append(configured, vm.ID)
		} else {
			other = append(other, vm.ID)
		}
	}
	// Sorted as the list sorts: by (group, name); db-7 comes first.
	if _, err := ctl.RequestAccess(ctx, admin, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: dbVM.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}}); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)

	read := func(f control.VMListFilter, back bool) ([]string, []jit.VMView) {
		var ids []string
		var views []jit.VMView
		for range 100 {
			page, next, err := ctl.ListVMs(ctx, admin, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > f.Limit {
				t.Fatalf("page of %d for limit %d", len(page), f.Limit)
			}
			if back {
				slices.Reverse(page)
			}
			for _, v := range page {
				ids = append(ids, v.ID)
				views = append(views, v)
			}
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if back {
			slices.Reverse(ids)
		}
		return ids, views
	}
	for _, limit := range []int{1, 4, 100} {
		got, views := read(control.VMListFilter{JIT: jit.JITConfigured, Limit: limit}, false)
		if !slices.Equal(got, configured) {
			t.Errorf("configured in pages of %d: %v, want %v", limit, got, configured)
		}
		if v := views[0]; v.ApprovedLast7d != 1 || v.ActiveGrants != 1 || v.LastUser != "admin" || v.LastAccess == nil {
			t.Errorf("db-7's usage: %d approved, %d active, last %v by %q", v.ApprovedLast7d, v.ActiveGrants, v.LastAccess, v.LastUser)
		}
		got, _ = read(control.VMListFilter{JIT: jit.JITUnsupported, Limit: limit}, false)
		if !slices.Equal(got, other) {
			t.Errorf("unsupported (agents never connected) in pages of %d: %v, want %v", limit, got, other)
		}
		// Back from past the last VM.
		got, _ = read(control.VMListFilter{Limit: limit, Cursor: control.VMCursor("zzz", "", true)}, true)
		if want := idsOf(t, ctl, admin); !slices.Equal(got, want) {
			t.Errorf("back in pages of %d: %v, want %v", limit, got, want)
		}
	}
	if _, _, err := ctl.ListVMs(ctx, admin, control.VMListFilter{Limit: control.MaxVMPage + 1}); jit.ErrorTarget(err) != "limit" {
		t.Errorf("limit past the maximum: %v", err)
	}
	got, _ := read(control.VMListFilter{Search: "VM-1", Limit: 2}, false)
	if len(got) != 10 {
		t.Errorf("search vm-1: %d VMs, want 10 (vm-10 to vm-19)", len(got))
	}
}

// idsOf lists every VM id in list order, in one page.
func idsOf(t *testing.T, ctl *control.Control, a *control.Actor) []string {
	t.Helper()
	all, _, err := ctl.ListVMs(context.Background(), a, control.VMListFilter{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range all {
		ids = append(ids, v.ID)
	}
	return ids
}
