package control_test

import (
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestGroupNamesIgnoreCase: each group is a resource group to Azure's
// clients, and resource groups ignore case: a name that differs from an
// existing group's only in case is refused, and discovery puts a VM of
// such a resource group in the existing group.
func TestGroupNamesIgnoreCase(t *testing.T) {
	ctl, _, admin, _ := setup(t)
	ctx := t.Context()
	_, err := ctl.CreateGroup(ctx, admin, "PROD")
	if jit.ErrorCode(err) != jit.EConflict || jit.ErrorTarget(err) != "name" || !strings.Contains(jit.ErrorMessage(err), "group prod already exists") {
		t.Fatalf("creating group PROD next to prod: %v (target %q), want a conflict naming prod", err, jit.ErrorTarget(err))
	}
	res, err := ctl.UpsertDiscovered(ctx, nil, []jit.Discovered{{VM: jit.VM{Name: "web-9", Group: "Prod", Backend: jit.BackendAzure, OS: "linux",
		Addresses:  []string{"10.0.0.9"},
		ExternalID: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/Prod/providers/Microsoft.Compute/virtualMachines/web-9"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Created) != 1 || res.Created[0] != "prod/web-9" || len(res.GroupsCreated) != 0 {
		t.Errorf("discovery of resource group Prod: created %v, groups created %v; want prod/web-9 and no group", res.Created, res.GroupsCreated)
	}
	groups, err := ctl.ListGroups(ctx, admin)
	if err != nil || len(groups) != 1 || groups[0].Name != "prod" {
		t.Errorf("groups: %v %+v, want prod only", err, groups)
	}
}
