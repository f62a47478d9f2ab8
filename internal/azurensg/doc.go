// Package azurensg is ajar's Azure backend: it discovers a subscription's
// virtual machines (their NICs, addresses, power state, OS and the network
// security groups in front of them) and enforces JIT desired states as NSG
// security rules, using the official Azure SDK for Go (armcompute,
// armnetwork, azidentity).
//
// # Which NSGs
//
// Apply and Remove resolve the VM's NSGs live on every call, from its ARM id
// (jit.VM.ExternalID): VM -> primary NIC -> primary IP configuration. The NSG
// on that NIC and the NSG on its subnet are both in the traffic's path, and
// ajar writes the same rules into each of them, so that the lock holds in the
// first and a grant passes both. The locked address is that IP
// configuration's private IP. NSGs listed in the VM's LabelNSG label (set by
// Discover) that are no longer in the path are cleaned of the VM's rules, and
// Remove falls back to them when the VM itself is gone.
//
// # Rules
//
// For a VM with a non-empty lock ajar keeps, in each NSG:
//
//   - one inbound Deny rule from any source to the VM's private IP on the
//     locked ports, named "ajar-deny-<vm name>-<tag>" (a VM whose lock mixes
//     protocols gets one Deny rule per protocol, "ajar-deny-<vm
//     name>-tcp-<tag>" and so on);
//   - one inbound Allow rule per active grant, from the grant's source to the
//     VM's private IP on the grant's port and protocol, named
//     "ajar-allow-<grant id>-<tag>".
//
// <tag> is the first 8 hex digits of the SHA-256 of the VM's lower-cased ARM
// id, so a rule's name alone says which VM owns it (names are immutable in
// Azure; descriptions are not). A rule is ajar's for a VM if and only if its
// name starts with "ajar-" and ends with "-<tag>"; every other rule is left
// exactly as it is: never edited, reordered or deleted.
//
// # Priorities
//
// The Deny rule must come before (have a lower number than) every inbound
// Allow rule of someone else that lets the whole internet (source *,
// Internet, Any, 0.0.0.0/0 or ::/0) reach any locked port and protocol on
// the VM's IP, so that the lock holds. It takes the highest free priority
// below the first such rule (4096 when there is none), and the grants'
// Allow rules take the highest free priorities below the Deny rule. ajar's
// rules thus sit right in front of the rules they override and leave the
// operator's earlier rules in force: a Deny for a known bad source still
// wins over a grant, and an Allow from a narrower source (an office range,
// AzureLoadBalancer, VirtualNetwork) placed ahead of the lock still lets
// that source in; Apply logs such rules. The overlapping Allow rules behind
// the lock are the rules it shadows (Enforcer.Shadowed). Rules that already
// sit at a valid priority keep it. When no such priorities are free Apply
// fails with a jit.EConflict error saying so.
package azurensg
