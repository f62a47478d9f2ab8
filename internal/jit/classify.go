package jit

import (
	"slices"
	"time"
)

// ManagementPorts are the ports JIT is recommended for.
var ManagementPorts = []int{22, 3389, 5985, 5986}

// AgentOfflineAfter is how long an agent may stay silent before its VM
// counts as unsupported.
const AgentOfflineAfter = 2 * time.Minute

// Classification is where a VM sits in the console's three tabs.
type Classification struct {
	JIT    string `json:"jit"`              // configured, not-configured, unsupported
	Health string `json:"health,omitempty"` // for not-configured: Healthy or Unhealthy
	Reason string `json:"reason,omitempty"` // why unsupported, or why unhealthy
}

// Health values of a not-configured VM.
const (
	Healthy   = "Healthy"
	Unhealthy = "Unhealthy"
)

// Classify places vm given whether it has a JIT policy.
func Classify(vm VM, hasPolicy bool, now time.Time) Classification {
	reason := Unsupported(vm, now)
	if hasPolicy {
		return Classification{JIT: JITConfigured, Reason: reason}
	}
	if reason != "" {
		return Classification{JIT: JITUnsupported, Reason: reason}
	}
	if open := ExposedManagementPorts(vm); len(open) > 0 {
		return Classification{JIT: JITNotConfigured, Health: Unhealthy, Reason: "JIT recommended"}
	}
	return Classification{JIT: JITNotConfigured, Health: Healthy}
}

// Unsupported returns why ajar cannot enforce on vm now, or "".
func Unsupported(vm VM, now time.Time) string {
	r := vm.Report
	switch {
	case r == nil && vm.Backend == BackendAgent:
		return "agent never connected"
	case r == nil:
		return "not discovered yet"
	case vm.Backend == BackendAgent && now.Sub(r.Time) > AgentOfflineAfter:
		return "agent offline"
	case !r.Enforceable:
		if r.Reason == "" {
			return "backend cannot enforce on this VM"
		}
		return r.Reason
	}
	return ""
}

// ExposedManagementPorts lists the management ports vm exposes: those its
// agent sees listening, or those its cloud firewall opens to anyone.
func ExposedManagementPorts(vm VM) []Socket {
	if vm.Report == nil {
		return nil
	}
	var out []Socket
	for _, s := range append(slices.Clone(vm.Report.Listening), vm.Report.Exposed...) {
		if slices.Contains(ManagementPorts, s.Port) && !slices.ContainsFunc(out, func(o Socket) bool { return o.Port == s.Port }) {
			out = append(out, s)
		}
	}
	return out
}

// Recommend returns the recommended port rules for vm: the management
// ports it exposes, or by OS when nothing has been seen (Linux 22;
// Windows 3389, 5985, 5986). Protocol *, any source, at most 3 hours.
func Recommend(vm VM) []PortRule {
	var ports []int
	for _, s := range ExposedManagementPorts(vm) {
		ports = append(ports, s.Port)
	}
	if len(ports) == 0 {
		if vm.OS == "windows" {
			ports = []int{3389, 5985, 5986}
		} else {
			ports = []int{22}
		}
	}
	slices.Sort(ports)
	rules := make([]PortRule, 0, len(ports))
	for _, p := range ports {
		rules = append(rules, PortRule{Number: p, Protocol: ProtoAny, AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: FormatISODuration(DefaultMaxDuration)})
	}
	return rules
}
