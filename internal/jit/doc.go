// Package jit holds ajar's domain: VMs, JIT policies, access requests,
// grants, users, roles, activity events and the desired state that
// enforcers make true. It validates input, decides what a request may open,
// and defines the one error type that travels from the store to the API and
// back to the CLI. It does no I/O.
package jit
