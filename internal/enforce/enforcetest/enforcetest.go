// Package enforcetest is the suite every enforce.Enforcer must pass: the
// same story of lock, grant, expiry and removal, checked against whatever
// the backend's firewall really lets through.
package enforcetest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/enforce"
	"github.com/ajarhq/ajar/internal/jit"
)

// Harness is one backend under test.
type Harness struct {
	Enforcer enforce.Enforcer
	VM       jit.VM
	// SourceA and SourceB are two client addresses; SourceNet is a prefix
	// that holds SourceA but not SourceB.
	SourceA, SourceB netip.Addr
	SourceNet        netip.Prefix
	// Port is a port the VM listens on with both TCP and UDP; OtherPort a
	// second TCP port that the suite never locks.
	Port, OtherPort int
	// Reachable reports whether a new connection (or datagram) from src to
	// port/proto on the VM gets through the backend's firewall now.
	Reachable func(t *testing.T, src netip.Addr, port int, proto string) bool
}

// Run runs the suite against a fresh harness.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	h := newHarness(t)
	ctx := context.Background()
	rev := int64(0)
	apply := func(lock []jit.PortLock, grants ...jit.GrantRule) {
		t.Helper()
		rev++
		st := jit.DesiredState{VMID: h.VM.ID, Revision: rev, Lock: lock, Grants: grants, ServerTime: time.Now().UTC()}
		if err := h.Enforcer.Apply(ctx, h.VM, st); err != nil {
			t.Fatalf("apply revision %d: %v", rev, err)
		}
	}
	expect := func(step string, src netip.Addr, port int, proto string, want bool) {
		t.Helper()
		if got := h.Reachable(t, src, port, proto); got != want {
			t.Fatalf("%s: %s -> %d/%s reachable = %v, want %v", step, src, port, proto, got, want)
		}
	}
	grant := func(id, proto string, src netip.Prefix) jit.GrantRule {
		return jit.GrantRule{ID: id, Port: h.Port, Protocol: proto, Source: src.String(),
			EndTime: time.Now().Add(time.Hour).UTC(), RemainingSeconds: 3600}
	}
	single := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

	expect("before JIT", h.SourceA, h.Port, jit.ProtoTCP, true)

	lock := []jit.PortLock{{Port: h.Port, Protocol: jit.ProtoAny}}
	apply(lock)
	expect("locked", h.SourceA, h.Port, jit.ProtoTCP, false)
	expect("locked", h.SourceB, h.Port, jit.ProtoTCP, false)
	expect("locked", h.SourceA, h.Port, jit.ProtoUDP, false)
	expect("other port while locked", h.SourceA, h.OtherPort, jit.ProtoTCP, true)

	apply(lock, grant("g1", jit.ProtoTCP, single(h.SourceA)))
	expect("grant A tcp", h.SourceA, h.Port, jit.ProtoTCP, true)
	expect("grant A tcp, B", h.SourceB, h.Port, jit.ProtoTCP, false)
	expect("grant A tcp, udp", h.SourceA, h.Port, jit.ProtoUDP, false)

	apply(lock, grant("g2", jit.ProtoUDP, single(h.SourceA)))
	expect("grant A udp", h.SourceA, h.Port, jit.ProtoUDP, true)
	expect("grant A udp, tcp gone", h.SourceA, h.Port, jit.ProtoTCP, false)

	apply(lock, grant("g3", jit.ProtoAny, h.SourceNet))
	expect("grant net", h.SourceA, h.Port, jit.ProtoTCP, true)
	expect("grant net", h.SourceB, h.Port, jit.ProtoTCP, false)

	apply(lock)
	expect("grant ended", h.SourceA, h.Port, jit.ProtoTCP, false)

	apply(lock, grant("g4", jit.ProtoTCP, single(h.SourceB)))
	if err := h.Enforcer.Apply(ctx, h.VM, jit.DesiredState{VMID: h.VM.ID, Revision: rev, Lock: lock,
		Grants: []jit.GrantRule{grant("g4", jit.ProtoTCP, single(h.SourceB))}, ServerTime: time.Now().UTC()}); err != nil {
		t.Fatalf("re-apply the same state: %v", err)
	}
	expect("idempotent", h.SourceB, h.Port, jit.ProtoTCP, true)

	apply(nil)
	expect("JIT disabled", h.SourceA, h.Port, jit.ProtoTCP, true)

	apply(lock)
	if err := h.Enforcer.Remove(ctx, h.VM); err != nil {
		t.Fatalf("remove: %v", err)
	}
	expect("removed", h.SourceA, h.Port, jit.ProtoTCP, true)
	expect("removed", h.SourceB, h.Port, jit.ProtoUDP, true)
}
