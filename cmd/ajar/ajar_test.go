package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func TestLoginWritesPrivateConfig(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// Nothing in the environment but the config folder: the saved login
	// is all later commands have.
	xdg := c.env["XDG_CONFIG_HOME"]
	bare := &cli{t: t, srv: c.srv, env: map[string]string{"XDG_CONFIG_HOME": xdg}}

	if msg, _ := bare.fails("whoami"); !strings.Contains(msg, "ajar login") {
		t.Errorf("whoami before login: %q, want a hint to log in", msg)
	}
	if msg, _ := bare.fails("login", "--server", c.srv.URL, "--token", "ajar_wrong"); msg == "" {
		t.Error("login with a wrong token: empty error")
	}
	path := filepath.Join(xdg, "ajar", "config.json")
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a failed login wrote the config")
	}

	out := bare.must("login", "--server", c.srv.URL, "--token", ajardtest.AdminToken)
	if !strings.Contains(out, "admin") {
		t.Errorf("login printed %q, want the user", out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("config folder mode %v, want 0700", di.Mode().Perm())
	}
	var saved config
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &saved); err != nil || saved.Server != c.srv.URL || saved.Token != ajardtest.AdminToken {
		t.Fatalf("config %s: %+v, %v", b, saved, err)
	}

	if out := bare.must("whoami"); !strings.Contains(out, "admin") {
		t.Errorf("whoami after login: %q", out)
	}
	bare.must("group", "add", "prod")
	if out := bare.must("group", "ls"); !strings.Contains(out, "prod") {
		t.Errorf("group ls: %q", out)
	}
	// The environment overrides the file.
	env := bare.as("ajar_wrong")
	if _, _, err := env.run("whoami"); err == nil {
		t.Error("AJAR_TOKEN did not override the saved token")
	}

	bare.must("logout")
	if _, err := os.Stat(path); err == nil {
		t.Error("logout left the config")
	}
	bare.fails("whoami")

	// --config names another file.
	other := filepath.Join(t.TempDir(), "sub", "ajar.json")
	bare.must("--config", other, "login", "--server", c.srv.URL, "--token", ajardtest.AdminToken)
	if fi, err := os.Stat(other); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--config file: %v %v", fi, err)
	}
	if out := bare.must("--config", other, "group", "ls"); !strings.Contains(out, "prod") {
		t.Errorf("group ls with --config: %q", out)
	}
}

// TestStory walks the whole story through the CLI: a VM, its policy, a
// short grant that opens and expires, and the log that records it.
func TestStory(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod", "--address", "10.0.0.5", "--label", "team=web")
	c.must("vm", "add", "win", "--group", "prod", "--os", "windows", "--address", "10.0.0.6")

	// With no --port: the recommendation (Linux 22, Windows 3389/5985/5986).
	out := c.must("jit", "enable", "web")
	if !strings.Contains(out, "22") {
		t.Errorf("jit enable web printed %q", out)
	}
	var pol jit.Policy
	c.json(&pol, "jit", "show", "web")
	if len(pol.Ports) != 1 || pol.Ports[0].Number != 22 || pol.Ports[0].MaxRequestAccessDuration != "PT3H" {
		t.Errorf("recommended policy of web: %+v", pol.Ports)
	}
	c.must("jit", "enable", "win")
	c.json(&pol, "jit", "show", "prod/win")
	var nums []int
	for _, p := range pol.Ports {
		nums = append(nums, p.Number)
	}
	if slices.Sort(nums); !slices.Equal(nums, []int{3389, 5985, 5986}) {
		t.Errorf("recommended policy of win: %v", nums)
	}

	// With ports, a maximum and sources.
	c.must("jit", "enable", "web", "--port", "22/tcp", "--port", "8443", "--max", "30m", "--source", "127.0.0.0/8", "--source", "10.1.0.0/16")
	c.json(&pol, "jit", "show", "web")
	want := []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"127.0.0.0/8", "10.1.0.0/16"}, MaxRequestAccessDuration: "PT30M"},
		{Number: 8443, Protocol: "*", AllowedSourceAddressPrefixes: []string{"127.0.0.0/8", "10.1.0.0/16"}, MaxRequestAccessDuration: "PT30M"},
	}
	if len(pol.Ports) != 2 || !slices.EqualFunc(pol.Ports, want, func(a, b jit.PortRule) bool {
		return a.Number == b.Number && a.Protocol == b.Protocol && a.MaxRequestAccessDuration == b.MaxRequestAccessDuration &&
			slices.Equal(a.AllowedSourceAddressPrefixes, b.AllowedSourceAddressPrefixes)
	}) {
		t.Errorf("policy: %+v, want %+v", pol.Ports, want)
	}
	// ISO 8601 works too.
	c.must("jit", "enable", "web", "--port", "22/tcp", "--port", "8443", "--max", "PT30M")

	out = c.must("vm", "ls")
	if !strings.Contains(out, "web") || !strings.Contains(out, "configured") || !strings.Contains(out, "ACTIVE-GRANTS") {
		t.Errorf("vm ls:\n%s", out)
	}

	out = c.must("request", "web", "--port", "22", "--for", "2s", "--reason", "deploy")
	if !strings.Contains(out, "127.0.0.1/32") || !strings.Contains(out, "prod/web") {
		t.Errorf("request printed:\n%s", out)
	}
	var gs valueList[jit.Grant]
	c.json(&gs, "grants", "ls", "--vm", "web")
	if len(gs.Value) != 1 || gs.Value[0].Status != jit.GrantActive || gs.Value[0].Port != 22 || gs.Value[0].Source != "127.0.0.1/32" {
		t.Fatalf("grants after the request: %+v", gs.Value)
	}
	if d := gs.Value[0].EndTime.Sub(gs.Value[0].StartTime); d != 2*time.Second {
		t.Errorf("grant lasts %s, want 2s", d)
	}
	if out := c.must("grants", "ls", "--status", "active"); !strings.Contains(out, "active") || !strings.Contains(out, gs.Value[0].ID) {
		t.Errorf("grants ls --status active:\n%s", out)
	}

	time.Sleep(2 * time.Second)
	eventually(t, 10*time.Second, "grant expired", func() bool {
		c.json(&gs, "grants", "ls", "--vm", "prod/web")
		return len(gs.Value) == 1 && gs.Value[0].Status == jit.GrantExpired
	})
	if out := c.must("grants", "ls"); !strings.Contains(out, "expired") {
		t.Errorf("grants ls after expiry:\n%s", out)
	}

	out = c.must("log", "--vm", "web")
	for _, op := range []string{jit.OpGrantOpen, jit.OpGrantExpire, jit.OpRequestApprove, jit.OpPolicyCreate} {
		if !strings.Contains(out, op) {
			t.Errorf("log --vm web has no %s:\n%s", op, out)
		}
	}
	if strings.Contains(out, "prod/win") {
		t.Errorf("log --vm web shows events of win:\n%s", out)
	}

	// CSV: a header and one row per event, the right ones.
	vmID := gs.Value[0].VMID
	recs, err := csv.NewReader(strings.NewReader(c.must("log", "--csv", "--vm", "web"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 || recs[0][0] != "seq" || recs[0][6] != "operation" {
		t.Fatalf("csv header: %v", recs)
	}
	var ops []string
	for _, r := range recs[1:] {
		if r[4] != vmID {
			t.Errorf("csv row of another VM: %v", r)
		}
		ops = append(ops, r[6])
	}
	for _, op := range []string{jit.OpGrantOpen, jit.OpGrantExpire} {
		if n := count(ops, op); n != 1 {
			t.Errorf("csv has %d %s rows, want 1: %v", n, op, ops)
		}
	}
	recs, err = csv.NewReader(strings.NewReader(c.must("log", "--csv", "--op", "grant.expire"))).ReadAll()
	if err != nil || len(recs) != 2 || recs[1][6] != "grant.expire" || recs[1][7] != "success" {
		t.Errorf("log --csv --op grant.expire: %v %v", recs, err)
	}
	// --limit and --since.
	recs, _ = csv.NewReader(strings.NewReader(c.must("log", "--csv", "--limit", "2"))).ReadAll()
	if len(recs) != 3 {
		t.Errorf("log --csv --limit 2: %d rows, want header + 2", len(recs))
	}
	if out := c.must("log", "--since", "1h", "--op", "grant.open"); !strings.Contains(out, "grant.open") {
		t.Errorf("log --since 1h:\n%s", out)
	}
	if out := c.must("log", "--until", "2000-01-01T00:00:00Z"); strings.Contains(out, "grant.open") {
		t.Errorf("log --until 2000:\n%s", out)
	}

	// JSON lines: one event a line, in order.
	lines := strings.Split(strings.TrimSpace(c.must("log", "--jsonl", "--user", "admin")), "\n")
	var prev int64
	for _, l := range lines {
		var e jit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq <= prev || e.Actor != "admin" {
			t.Fatalf("jsonl line %q: %+v %v", l, e, err)
		}
		prev = e.Seq
	}

	if out := c.must("log", "verify"); !strings.Contains(out, "OK") {
		t.Errorf("log verify: %q", out)
	}
	var v jit.Verification
	c.json(&v, "log", "verify")
	if !v.OK || v.Events < 5 {
		t.Errorf("log verify -o json: %+v", v)
	}

	// vm rm, and the VM is gone.
	c.must("jit", "disable", "win")
	c.must("vm", "rm", "win")
	c.fails("vm", "show", "win")
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestJSONOutput(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	var g jit.Group
	c.json(&g, "group", "add", "prod")
	if g.Name != "prod" {
		t.Errorf("group add -o json: %+v", g)
	}
	var vm jit.VM
	c.json(&vm, "vm", "add", "web", "--group", "prod", "--address", "10.0.0.5", "--label", "a=b")
	if vm.ID == "" || vm.Labels["a"] != "b" || vm.Addresses[0] != "10.0.0.5" {
		t.Errorf("vm add -o json: %+v", vm)
	}
	var vms valueList[jit.VMView]
	c.json(&vms, "vm", "ls", "--jit", "unsupported")
	if len(vms.Value) != 1 || vms.Value[0].ID != vm.ID || vms.Value[0].Classification.JIT != jit.JITUnsupported {
		t.Errorf("vm ls -o json: %+v", vms)
	}
	c.json(&vms, "vm", "ls", "--jit", "configured")
	if len(vms.Value) != 0 {
		t.Errorf("vm ls --jit configured: %+v", vms)
	}
	var view jit.VMView
	c.json(&view, "vm", "show", vm.ID)
	if view.Name != "web" || len(view.Recommended) == 0 {
		t.Errorf("vm show ID -o json: %+v", view)
	}
	var who client.Whoami
	c.json(&who, "whoami")
	if who.User != "admin" || who.Address != "127.0.0.1" {
		t.Errorf("whoami -o json: %+v", who)
	}
	var pol jit.Policy
	c.json(&pol, "jit", "enable", "web", "--port", "22")
	var req jit.Request
	c.json(&req, "request", "web", "--for", "10m")
	if len(req.Grants) != 1 || req.Grants[0].Port != 22 || req.User != "admin" {
		t.Errorf("request -o json: %+v", req)
	}
	var users valueList[jit.User]
	c.json(&users, "user", "ls")
	if len(users.Value) != 1 || users.Value[0].Name != "admin" {
		t.Errorf("user ls -o json: %+v", users)
	}
	var groups valueList[jit.Group]
	c.json(&groups, "group", "ls")
	if len(groups.Value) != 1 {
		t.Errorf("group ls -o json: %+v", groups)
	}
	var events valueList[jit.Event]
	c.json(&events, "log", "--op", "grant.open")
	if len(events.Value) != 1 || events.Value[0].VMID != vm.ID {
		t.Errorf("log -o json: %+v", events)
	}
}

func TestAmbiguousVMName(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, g := range []string{"prod", "dev"} {
		c.must("group", "add", g)
		c.must("vm", "add", "web", "--group", g)
	}
	msg, stderr := c.fails("vm", "show", "web")
	if !strings.Contains(msg, "dev, prod") || !strings.Contains(stderr, "dev/web") {
		t.Errorf("ambiguous name: error %q, stderr %q; want both groups named", msg, stderr)
	}
	c.fails("jit", "enable", "web")
	var v jit.VMView
	c.json(&v, "vm", "show", "dev/web")
	if v.Group != "dev" {
		t.Errorf("dev/web is in %s", v.Group)
	}
	c.must("jit", "enable", "prod/web")
	var byID jit.VMView
	c.json(&byID, "vm", "show", v.ID)
	if byID.ID != v.ID {
		t.Errorf("by id: %+v", byID)
	}
	if msg, _ := c.fails("vm", "show", "nope"); !strings.Contains(msg, "no VM named nope") {
		t.Errorf("unknown VM: %q", msg)
	}
	if msg, _ := c.fails("vm", "show", "qa/web"); !strings.Contains(msg, "no VM web in group qa") {
		t.Errorf("unknown group/name: %q", msg)
	}
}

func TestErrorsCarryTheServersMessage(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod")
	c.must("jit", "enable", "web", "--port", "22/tcp", "--max", "10m")

	msg, stderr := c.fails("request", "web", "--port", "3389")
	want := "port 3389 is not in the JIT policy of VM web"
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if !strings.HasPrefix(stderr, "ajar: "+want) || !strings.Contains(stderr, "(virtualMachines[0].ports[0].number)") {
		t.Errorf("stderr %q, want ajar: <message> (<target>)", stderr)
	}
	if msg, _ := c.fails("request", "web", "--for", "1h"); !strings.Contains(msg, "exceeds the maximum") {
		t.Errorf("too long: %q", msg)
	}
	if msg, _ := c.fails("request", "web", "--port", "22/udp"); !strings.Contains(msg, "does not match") {
		t.Errorf("protocol mismatch: %q", msg)
	}
	if msg, _ := c.fails("jit", "enable", "web", "--port", "22", "--max", "25h"); !strings.Contains(msg, "between PT5M and PT24H") {
		t.Errorf("max too long: %q", msg)
	}
	// Errors caught before the server.
	for _, args := range [][]string{
		{"request", "web", "--for", "soon"},
		{"jit", "enable", "web", "--port", "70000"},
		{"jit", "enable", "web", "--port", "22/icmp"},
		{"vm", "add", "x"}, // no --group
		{"vm", "bogus"},
		{"-o", "yaml", "vm", "ls"},
		{"log", "--since", "yesterday"},
		{"log", "--csv", "--jsonl"},
	} {
		if _, _, err := c.run(args...); err == nil {
			t.Errorf("ajar %v succeeded", args)
		}
	}
	// Nothing was opened.
	var gs valueList[jit.Grant]
	c.json(&gs, "grants", "ls")
	if len(gs.Value) != 0 {
		t.Errorf("refused requests opened grants: %+v", gs.Value)
	}
	if out := c.must("log", "--op", "request.refuse"); !strings.Contains(out, "failure") {
		t.Errorf("refusals are not in the log:\n%s", out)
	}
}

func TestAdminVerbs(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("group", "add", "dev")
	c.must("vm", "add", "web", "--group", "prod")
	c.must("vm", "add", "box", "--group", "dev")
	c.must("jit", "enable", "web", "--port", "22")
	c.must("jit", "enable", "box", "--port", "22")

	if _, _, err := c.runIn("correct-horse-battery\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	var users valueList[jit.User]
	c.json(&users, "user", "ls")
	if i := slices.IndexFunc(users.Value, func(u jit.User) bool { return u.Name == "alice" }); i < 0 || !users.Value[i].HasPassword {
		t.Errorf("user ls: %+v", users.Value)
	}
	c.must("user", "add", "bob")
	if _, _, err := c.runIn("another-long-password\n", "user", "passwd", "bob", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	c.fails("user", "passwd", "bob") // needs --password-stdin

	var b jit.RoleBinding
	c.json(&b, "role", "grant", "alice", "requester", "--group", "prod")
	if b.ID == "" || b.Role != "requester" || b.Group != "prod" {
		t.Fatalf("role grant: %+v", b)
	}
	if out := c.must("role", "ls", "--user", "alice"); !strings.Contains(out, "requester") || !strings.Contains(out, b.ID) {
		t.Errorf("role ls:\n%s", out)
	}
	var tok jit.CreatedToken
	c.json(&tok, "token", "create", "--user", "alice", "--name", "laptop", "--ttl", "720h")
	if tok.Secret == "" || tok.ExpiresAt == nil || tok.ExpiresAt.Before(time.Now().Add(719*time.Hour)) {
		t.Fatalf("token create: %+v", tok)
	}
	if out := c.must("token", "ls", "--user", "alice"); !strings.Contains(out, tok.ID) || !strings.Contains(out, "laptop") {
		t.Errorf("token ls:\n%s", out)
	}

	alice := c.as(tok.Secret)
	if out := alice.must("whoami"); !strings.Contains(out, "alice") || !strings.Contains(out, "requester") {
		t.Errorf("alice whoami:\n%s", out)
	}
	out := alice.must("request", "web", "--for", "1s")
	if !strings.Contains(out, "prod/web") {
		t.Errorf("alice's request:\n%s", out)
	}
	var gs valueList[jit.Grant]
	c.json(&gs, "grants", "ls", "--user", "alice")
	if len(gs.Value) != 1 || gs.Value[0].User != "alice" {
		t.Errorf("alice's grants: %+v", gs.Value)
	}
	// A requester cannot change policies, reach other groups or administer.
	if msg, _ := alice.fails("jit", "enable", "web", "--port", "22"); msg == "" {
		t.Error("requester enabled JIT")
	}
	alice.fails("jit", "disable", "web")
	alice.fails("request", "box") // dev: not hers (and she cannot see it)
	alice.fails("user", "ls")
	alice.fails("token", "create", "--user", "alice")
	alice.fails("role", "grant", "alice", "admin", "--group", "*")

	// Revoking the binding, then the token.
	c.must("role", "revoke", b.ID)
	alice.fails("request", "web", "--for", "1s")
	c.must("token", "revoke", tok.ID)
	if msg, _ := alice.fails("whoami"); msg == "" {
		t.Error("revoked token still works")
	}
	c.must("user", "rm", "bob")
	c.json(&users, "user", "ls")
	if slices.ContainsFunc(users.Value, func(u jit.User) bool { return u.Name == "bob" }) {
		t.Errorf("bob is still there: %+v", users.Value)
	}
	c.fails("role", "grant", "alice", "reader") // --group is required
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod")
	c.must("jit", "enable", "web", "--port", "22", "--port", "3389/tcp")
	var req jit.Request
	c.json(&req, "request", "web", "--for", "10m") // every port of the policy
	if len(req.Grants) != 2 {
		t.Fatalf("request with no --port opened %d grants, want 2: %+v", len(req.Grants), req.Grants)
	}
	id := req.Grants[0].ID
	if out := c.must("grant", "revoke", id); !strings.Contains(out, "Revoked grant "+id) {
		t.Errorf("revoke printed %q", out)
	}
	var gs valueList[jit.Grant]
	c.json(&gs, "grants", "ls", "--status", "revoked")
	if len(gs.Value) != 1 || gs.Value[0].ID != id || gs.Value[0].EndedBy != "admin" {
		t.Errorf("revoked grants: %+v", gs.Value)
	}
	c.json(&gs, "grants", "ls", "--status", "active")
	if len(gs.Value) != 1 || gs.Value[0].ID != req.Grants[1].ID {
		t.Errorf("active grants: %+v", gs.Value)
	}
	// Revoking it again reports its state and succeeds.
	if out := c.must("grant", "revoke", id); !strings.Contains(out, "revoked by admin") {
		t.Errorf("second revoke printed %q, want its state", out)
	}
	c.fails("revoke", "no-such-grant")
	if out := c.must("log", "--op", "grant.revoke"); !strings.Contains(out, "grant.revoke") {
		t.Errorf("log has no revoke:\n%s", out)
	}
}

func TestEnrollToken(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	out := c.must("vm", "enroll-token", "--group", "prod", "--ttl", "30m", "--uses", "3")
	if !strings.Contains(out, "ajar-agent enroll --server "+c.srv.URL+" --token ") || !strings.Contains(out, "3 use") {
		t.Errorf("enroll-token printed:\n%s", out)
	}
	var tok jit.CreatedToken
	c.json(&tok, "vm", "enroll-token", "--group", "prod")
	if tok.Secret == "" || tok.Kind != jit.TokenEnroll {
		t.Errorf("enroll-token -o json: %+v", tok)
	}
}
