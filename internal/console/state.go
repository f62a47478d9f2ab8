package console

import (
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
)

// machineState is where a machine stands, said once: a badge, what it
// means, and what to do about it.
type machineState struct {
	Badge, Class string // Class: ok, warn, bad or ""
	Meaning      string
	Remedy       string
	// Enforced is false when ajar cannot apply the machine's rules now.
	Enforced bool
	// CanEnable is false for a machine JIT cannot be enabled on yet.
	CanEnable bool
}

func stateOf(vm jit.VMView) machineState {
	cl := vm.Classification
	switch {
	case vm.Policy != nil && vm.EnforcementError != "":
		return machineState{Badge: "JIT enabled, not enforced", Class: "warn",
			Meaning: "ajar could not apply this machine's rules: " + vm.EnforcementError + ". Until that is fixed, access granted here may not open, and the ports may not be locked.",
			Remedy:  enforcementRemedy(vm), CanEnable: true}
	case vm.Policy != nil && cl.Reason != "":
		return machineState{Badge: "JIT enabled, not enforced now", Class: "warn",
			Meaning: "JIT is enabled but ajar cannot enforce on this machine now: " + cl.Reason + ". Access granted meanwhile opens once it can.",
			Remedy:  unsupportedRemedy(vm), CanEnable: true}
	case vm.Policy != nil:
		return machineState{Badge: "JIT enabled", Class: "ok", Enforced: true, CanEnable: true,
			Meaning: "The management ports below are locked; access opens a port for one address, for a bounded time."}
	case cl.JIT == jit.JITNotConfigured && cl.Health == jit.Unhealthy:
		return machineState{Badge: "Unhealthy", Class: "bad", Enforced: true, CanEnable: true,
			Meaning: "Management ports of this machine are open to anyone.", Remedy: "Enable JIT below to lock them; people then ask for access when they need it."}
	case cl.JIT == jit.JITNotConfigured:
		return machineState{Badge: "Healthy", Enforced: true, CanEnable: true,
			Meaning: "No management port is seen open to anyone. JIT is not enabled.", Remedy: "Enable JIT below to lock the management ports anyway."}
	default:
		return machineState{Badge: "Unsupported", Class: "warn",
			Meaning: "ajar cannot enforce on this machine: " + cl.Reason + ", so JIT cannot be enabled yet.",
			Remedy:  unsupportedRemedy(vm)}
	}
}

func unsupportedRemedy(vm jit.VMView) string {
	reason := vm.Classification.Reason
	switch {
	case reason == "agent never connected":
		return "Enroll the host: create an enrollment token (Admin › Agent enrollment, or ajar vm enroll-token --group " + vm.Group + ") and run the enroll command it shows on the host."
	case reason == "agent offline":
		return "Check that ajar-agent runs on the host (systemctl status ajar-agent) and can reach this server."
	case reason == "not discovered yet":
		return "Wait for the next cloud sync, or run ajar azure sync."
	case strings.Contains(reason, "nftables"):
		return "Install nftables on the host (apt-get install nftables), then restart ajar-agent (systemctl restart ajar-agent)."
	case strings.Contains(reason, "permission") || strings.Contains(reason, "authoriz"):
		return "Give ajar the cloud permissions the README lists for this backend, then sync again."
	case strings.Contains(reason, "stopped") || strings.Contains(reason, "deallocated"):
		return "Start the machine; the next sync picks it up."
	case strings.Contains(reason, "NSG") || strings.Contains(reason, "security group"):
		return "Attach a network security group to the machine's network interface or subnet, then sync again."
	}
	return "Fix what the reason says on the host or in the cloud account; the machine moves on once ajar can enforce there."
}

func enforcementRemedy(vm jit.VMView) string {
	if vm.Backend == jit.BackendAgent {
		return "Look at ajar-agent's log on the host (journalctl -u ajar-agent); the agent retries by itself once the cause is fixed."
	}
	return "Check ajar's cloud permissions and the machine's network security group; ajar retries at the next sync."
}
