// Package awsec2 is ajar's AWS backend: it discovers the EC2 instances of
// the configured regions (their network interfaces, private and public
// IPv4 and IPv6 addresses, state, platform and security groups) and
// enforces JIT desired states with security groups, through the official
// AWS SDK for Go v2 (service/ec2) and its default credential chain.
//
// # The lock
//
// Security groups only allow, and one group is often shared by many
// instances, so ajar cannot deny a port in them, and must not edit rules
// others rely on. Instead:
//
//   - ajar creates and owns one security group per instance, named
//     "ajar-<instance id>" in the instance's VPC and tagged ajar:managed=true
//     and ajar:instance=<instance id> (ajar:lock records the locked ports).
//     It has no egress rule (the default allow-all is revoked, so that it
//     never widens what the instance may send) and one ingress rule per
//     active grant: the grant's port, protocol (TCP and UDP for *) and
//     source, described "ajar grant <id>". ajar attaches it to the
//     instance's primary network interface next to the groups already
//     there, and detaches and deletes it when JIT is disabled or the VM
//     deleted.
//   - The locked ports are closed when no other security group on the
//     interface opens them. A rule of another group that opens a locked
//     port to the internet (0.0.0.0/0 or ::/0) defeats the lock: Apply
//     fails with a jit.EConflict error naming it, so the VM shows that
//     reason. With Enforcer.RevokeShadowing (ajard --aws-revoke-shadowing)
//     ajar revokes such a rule itself, but only in a group no other
//     network interface uses and only a TCP or UDP rule whose ports are all
//     locked; before revoking it records the rule exactly (protocol, ports,
//     source, description) in the group's tags (ajar:revoked-for=<instance
//     id>, ajar:revoked:<hash> and ajar:revoked:<hash>:description), and it
//     puts it back, and deletes the record, when the lock no longer covers
//     it or JIT is disabled. Rules of other groups that open locked ports
//     to narrower sources (an office range, another security group) are
//     left alone and listed by Shadowed: they are the operator's choice.
//
// ajar never edits a security group it did not create without that
// opt-in, and with it only changes the ingress rules it records.
//
// # AWS's API
//
// Throttled calls (RequestLimitExceeded) are retried by the SDK's
// standard retryer with exponential backoff; calls that EC2 refuses
// because a group ajar just created or detached is not visible yet
// (InvalidGroup.NotFound, DependencyViolation) are retried with
// backoff (Client.Settle). A rule limit reached
// (RulesPerSecurityGroupLimitExceeded) is a jit.EConflict error with
// ReasonRuleLimit, a refusal a jit.EForbidden one: both make the VM
// unsupported with that reason until an attempt succeeds.
package awsec2
