package apitest

import (
	"strconv"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestRestartWithGrantsInFlight kills ajard with grants open and checks
// that on restart the grant that ended meanwhile is expired with its real
// end time and the other is still active.
func TestRestartWithGrantsInFlight(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	alice := s.Client(user(t, s, "alice", jit.RoleRequester, "prod"))
	v := vm(t, s.Admin, "prod", "db-7")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"), rule(3389, "TCP", "PT1H"))
	short := request(t, alice, v.ID, port(22, "PT2S")).Grants[0]
	long := request(t, alice, v.ID, port(3389, "PT60S")).Grants[0]

	s.Kill()
	time.Sleep(3 * time.Second)
	if !time.Now().After(short.EndTime.Add(500 * time.Millisecond)) {
		t.Fatalf("the short grant has not ended before the restart")
	}
	restarted := time.Now()
	s.Restart()

	// The server sweeps grants that ended while it was down at start; it
	// may still be at it right after it is ready (see
	// TestRestartServesEndedGrantsAsActive), so wait for it a little.
	g := grantByID(t, s, short.ID)
	for deadline := time.Now().Add(2 * time.Second); g.Status == jit.GrantActive && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		g = grantByID(t, s, short.ID)
	}
	if g.Status != jit.GrantExpired || g.EndedAt == nil || !g.EndedAt.Equal(short.EndTime) {
		t.Errorf("short grant after restart: %s endedAt %v, want expired at its end time %v (restart at %v)", g.Status, g.EndedAt, short.EndTime, restarted)
	}
	if g := grantByID(t, s, long.ID); g.Status != jit.GrantActive || g.EndedAt != nil {
		t.Errorf("long grant after restart: %s endedAt %v, want active", g.Status, g.EndedAt)
	}
	es := events(t, s, client.EventQuery{VM: v.ID, Operation: jit.OpGrantExpire})
	if len(es) != 1 || !detailsHave(t, es[0], "grant", short.ID) {
		t.Errorf("grant.expire events %v, want one for %s", es, short.ID)
	}
	wantVerified(t, s)
}

// TestRestartServesEndedGrantsAsActive checks that once ajard is ready after
// a restart it does not list as active grants that ended while it was down.
func TestRestartServesEndedGrantsAsActive(t *testing.T) {
	t.Parallel()
	s := start(t)
	group(t, s, "prod")
	var rules []jit.PortRule
	var ports []jit.PortRequest
	for p := 1000; p < 1064; p++ {
		rules = append(rules, rule(p, "TCP", "PT1H"))
		ports = append(ports, port(p, "PT1S"))
	}
	var vms []jit.VMRequest
	for i := range 4 {
		v := vm(t, s.Admin, "prod", "host-"+strconv.Itoa(i))
		policy(t, s.Admin, v.ID, false, rules...)
		vms = append(vms, jit.VMRequest{ID: v.ID, Ports: ports})
	}
	r, err := s.Admin.RequestAccess(t.Context(), jit.AccessRequest{VirtualMachines: vms, Justification: "many"})
	if err != nil {
		t.Fatal(err)
	}
	s.Kill()
	time.Sleep(time.Until(r.Grants[0].EndTime) + time.Second)
	s.Restart()
	now := time.Now()
	active := must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), "", jit.GrantActive, ""))
	stale := 0
	for _, g := range active {
		if g.EndTime.Before(now) {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("right after the restart %d of %d grants that ended while the server was down are listed as active", stale, len(r.Grants))
	}
	// They do end, with their real end times, a moment later.
	for deadline := time.Now().Add(5 * time.Second); len(active) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		active = must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), "", jit.GrantActive, ""))
	}
	t.Logf("the startup sweep ended them %v after the server was ready", time.Since(now))
	for _, g := range must[[]jit.Grant](t)(s.Admin.ListGrants(t.Context(), "", "", "")) {
		if g.Status != jit.GrantExpired || g.EndedAt == nil || !g.EndedAt.Equal(g.EndTime) {
			t.Fatalf("grant %s: %s endedAt %v, want expired at %v", g.ID, g.Status, g.EndedAt, g.EndTime)
		}
	}
}
