// Package gcpfw is ajar's Google Cloud backend: it discovers the Compute
// Engine instances of projects (their network interfaces, internal and
// external IPv4 and IPv6 addresses, status, network tags and the VPC
// firewall rules that apply to them) and enforces JIT desired states as
// VPC firewall rules, using the official Go SDK
// (cloud.google.com/go/compute/apiv1, REST transport) with Application
// Default Credentials.
//
// # The lock
//
// VPC firewall rules belong to a network (in the network's project: the
// host project of a Shared VPC), apply to instances by target network tag
// or service account, and are evaluated by priority (lower number first,
// a deny ahead of an allow at equal priority). ajar gives a locked
// instance a network tag of its own, "ajar-jit-<key>", where <key> is the
// first 8 hex digits of the SHA-256 of the instance's lower-cased
// ExternalID ("projects/P/zones/Z/instances/N"), set with the tags'
// fingerprint (412 conditionNotMet: read again and retry). In every
// network of the instance's interfaces it keeps:
//
//   - two ingress deny rules, from 0.0.0.0/0 and from ::/0 (a rule holds
//     one address family), for the locked ports, targeting the tag, named
//     "ajar-<key>-<net>-deny4" and "...-deny6";
//   - one ingress allow rule per active grant, from the grant's source on
//     its port and protocol, targeting the tag, one priority ahead of the
//     deny, named "ajar-<key>-<net>-allow-<first 12 hex digits of the
//     SHA-256 of the grant id>".
//
// <net> is 6 hex digits of the network's path, so an instance with
// interfaces in two networks of one project has rules in each. A rule is
// ajar's for an instance if and only if its name starts with
// "ajar-<key>-"; every other rule is left exactly as it is. Service
// accounts are not used as targets: an instance has one, and changing it
// needs the instance stopped.
//
// The deny takes priority DefaultDenyPriority (1000, Google's default, so
// that it wins the tie with rules created with the default) or, when an
// allow rule of someone else that applies to the instance opens a locked
// port to 0.0.0.0/0 or ::/0 at a lower number, that rule's priority (the
// deny wins the tie). Allow rules of others from narrower sources placed
// ahead of the lock keep letting their sources in (Apply logs them); the
// allow rules it overrides are the rules it shadows (Enforcer.Shadowed).
// When such a rule sits at priority 0, grants cannot come ahead of the
// lock: Apply fails with jit.EConflict saying so.
//
// Apply writes the rules before it tags the instance (the lock takes hold
// with the tag) and deletes the rules of ended grants first; Remove
// deletes the rules, then takes the tag off. Every write is a
// long-running operation that ajar waits for (Client.OpTimeout).
// Throttling (429, rateLimitExceeded) and resources not ready yet are
// retried with exponential backoff (Client.Retry); a firewall quota
// reached (403 quotaExceeded, QUOTA_EXCEEDED) is a jit.EConflict that
// makes the instance unsupported with that reason.
package gcpfw
