package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestApprovalCLI: a policy set with --approvers makes `ajar request`
// pending; the approver sees it in `requests ls --pending`, a deny needs
// a reason, and `ajar approve` opens the grant a waiting `request --wait`
// then prints.
func TestApprovalCLI(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "web", "--group", "prod")
	if out := c.must("jit", "enable", "web", "--port", "22", "--approvers", "1", "--pending-lifetime", "2h"); !strings.Contains(out, "Approval required: 1 approver(s); requests wait up to PT2H") {
		t.Errorf("jit enable printed %q", out)
	}
	user := func(name, role string) *cli {
		c.must("user", "add", name)
		c.must("role", "grant", name, role, "--group", "prod")
		var tok jit.CreatedToken
		c.json(&tok, "token", "create", "--user", name)
		return c.as(tok.Secret)
	}
	ann, bob := user("ann", "requester"), user("bob", "approver")

	var first jit.Request
	ann.json(&first, "request", "web", "--for", "10m")
	if first.Status != jit.RequestPending || len(first.Grants) != 0 {
		t.Fatalf("request under an approval rule: %+v", first)
	}
	if out := bob.must("requests", "ls", "--pending"); !strings.Contains(out, first.ID) || !strings.Contains(out, "0/1") {
		t.Errorf("requests ls --pending:\n%s", out)
	}
	if msg, _ := bob.fails("deny", first.ID); !strings.Contains(msg, "--reason") {
		t.Errorf("deny without a reason: %s", msg)
	}
	bob.must("deny", first.ID, "--reason", "not today")
	if out := ann.must("requests", "show", first.ID); !strings.Contains(out, "denied") || !strings.Contains(out, "not today") {
		t.Errorf("requests show of a denied request:\n%s", out)
	}
	if msg, _ := ann.fails("approve", first.ID); !strings.Contains(msg, "not pending") && !strings.Contains(msg, "may not") {
		t.Errorf("approve by the requester: %s", msg)
	}

	// A waiting request opens once approved.
	done := make(chan string, 1)
	go func() {
		out, errOut, err := ann.run("request", "web", "--for", "10m", "--wait", "20s")
		if err != nil {
			out = "error: " + err.Error() + "\n" + errOut
		}
		done <- out
	}()
	var pending []jit.Request
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var l valueList[jit.Request]
		bob.json(&l, "requests", "ls", "--pending")
		if pending = l.Value; len(pending) > 0 {
			break
		}
	}
	if len(pending) != 1 {
		t.Fatalf("pending requests: %+v", pending)
	}
	if out := bob.must("approve", pending[0].ID, "--reason", "ok"); !strings.Contains(out, "approved") {
		t.Errorf("approve printed %q", out)
	}
	if out := <-done; !strings.Contains(out, "GRANT") || !strings.Contains(out, "prod/web") {
		t.Errorf("request --wait printed:\n%s", out)
	}
}
