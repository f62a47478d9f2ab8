package lifecycletest

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// CheckServes checks that a store holding a fixture's data (events
// events, their last one head) verifies and serves as ajard does at
// start and after: it ends the grants whose time is up, lets the admin
// and alice in with their tokens, lists the VMs with their policies,
// opens a grant, and the log still verifies with the new events.
func CheckServes(ctx context.Context, st store.Store, events int64) error {
	v, err := control.VerifyLog(ctx, st, nil)
	if err != nil {
		return err
	}
	if !v.OK || v.Events != events {
		return fmt.Errorf("activity log: %+v, want %d events intact", v, events)
	}
	ctl := control.New(st, Quiet, time.Now)
	if _, err := ctl.ExpireDue(ctx); err != nil {
		return fmt.Errorf("expire: %w", err)
	}
	admin, err := ctl.Authenticate(ctx, AdminToken, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		return fmt.Errorf("the admin's token: %w", err)
	}
	vms, _, err := ctl.ListVMs(ctx, admin, control.VMListFilter{Group: Group, Limit: -1})
	if err != nil {
		return err
	}
	if len(vms) != 1 || vms[0].Name != VMName || vms[0].Policy == nil || len(vms[0].Policy.Ports) != 2 {
		return fmt.Errorf("VMs of %s: %+v", Group, vms)
	}
	grants, _, err := ctl.ListGrants(ctx, admin, control.GrantListFilter{VMID: vms[0].ID})
	if err != nil || len(grants) != 2 {
		return fmt.Errorf("the VM's grants: %v %v", grants, err)
	}
	r, err := ctl.RequestAccess(ctx, admin, jit.AccessRequest{Justification: "after the upgrade",
		VirtualMachines: []jit.VMRequest{{ID: vms[0].ID, Ports: []jit.PortRequest{{Number: 22, AllowedSourceAddressPrefix: "198.51.100.30", Duration: "PT1H"}}}}})
	if err != nil || r.Status != jit.RequestApproved || len(r.Grants) != 1 {
		return fmt.Errorf("request after the upgrade: %+v %v", r, err)
	}
	after, err := control.VerifyLog(ctx, st, nil)
	if err != nil {
		return err
	}
	if !after.OK || after.Events <= events {
		return fmt.Errorf("activity log after a request: %+v", after)
	}
	return nil
}
