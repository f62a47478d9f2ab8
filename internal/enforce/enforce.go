// Package enforce defines what every enforcement backend provides: making a
// VM's desired state (the lock on its JIT ports and the grants open ahead of
// it) true in a real firewall, and removing everything of ajar's again.
// Backends live in their own packages (nft for Linux hosts, azurensg for
// Azure NSGs); enforcetest holds the suite each of them must pass.
package enforce

import (
	"context"

	"github.com/ajarhq/ajar/internal/jit"
)

// Enforcer makes desired states true on one backend.
type Enforcer interface {
	// Apply makes the firewall of vm match state exactly: the ports in
	// state.Lock closed to everyone except the sources of state.Grants on
	// their port and protocol, established connections untouched, and
	// nothing else of ajar's left. A state with an empty Lock removes the
	// lock. Apply is idempotent.
	Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error
	// Remove deletes everything ajar created for vm and nothing else.
	Remove(ctx context.Context, vm jit.VM) error
}
