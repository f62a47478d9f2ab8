package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/webhook/webhooktest"
)

// ajar webhook add|ls|deliveries|rm: the secret is printed once (or read
// from a file), bad input is refused naming the field, the receiver gets
// signed events, their deliveries are listed, and rm stops them.
func TestWebhookCommands(t *testing.T) {
	c := newCLI(t)
	c.must("group", "add", "prod")
	if msg, _ := c.fails("webhook", "add", "http://hooks.example.com/x"); !strings.Contains(msg, "https") || !strings.Contains(msg, "(url)") {
		t.Errorf("plain http to a remote host: %s", msg)
	}
	if msg, _ := c.fails("webhook", "add", "https://hooks.example.com/x", "--events", "grant.opened,nope"); !strings.Contains(msg, `"nope"`) || !strings.Contains(msg, "(events)") {
		t.Errorf("unknown kind: %s", msg)
	}
	if msg, _ := c.fails("webhook", "add", "https://hooks.example.com/x", "--format", "email"); !strings.Contains(msg, "(format)") {
		t.Errorf("unknown format: %s", msg)
	}
	if out := c.must("webhook", "ls"); strings.Count(out, "\n") != 1 {
		t.Errorf("refusals created webhooks:\n%s", out)
	}

	out := c.must("webhook", "add", "https://hooks.example.com/slack", "--format", "slack", "--events", "request.pending", "--group", "prod")
	if !strings.Contains(out, "shown once") || !strings.Contains(out, "whsec_") {
		t.Errorf("webhook add prints no secret:\n%s", out)
	}
	secret := "file-secret-0123456789abcdef"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rcv := webhooktest.Start(t, secret)
	var h jit.CreatedWebhook
	c.json(&h, "webhook", "add", rcv.URL, "--events", "policy.changed", "--secret-file", file)
	if h.Secret != secret || h.Format != jit.FormatPlain {
		t.Fatalf("webhook add -o json = %+v", h)
	}
	if out := c.must("webhook", "ls"); !strings.Contains(out, h.ID) || !strings.Contains(out, "slack") || strings.Contains(out, secret) || strings.Contains(out, "whsec_") {
		t.Errorf("webhook ls:\n%s", out)
	}

	var vm jit.VM
	c.json(&vm, "vm", "add", "db-7", "--group", "prod")
	c.must("jit", "enable", "db-7", "--port", "22")
	eventually(t, 10*time.Second, "the policy change is delivered", func() bool { return len(rcv.Accepted()) == 1 })
	eventually(t, 10*time.Second, "the delivery is listed", func() bool {
		out := c.must("webhook", "deliveries", h.ID)
		return strings.Contains(out, "policy.changed") && strings.Contains(out, "delivered")
	})
	c.must("webhook", "rm", h.ID)
	if msg, _ := c.fails("webhook", "deliveries", h.ID); !strings.Contains(msg, "not found") {
		t.Errorf("deliveries of a removed webhook: %s", msg)
	}
	c.must("jit", "disable", "db-7")
	time.Sleep(500 * time.Millisecond)
	if n := len(rcv.Accepted()); n != 1 {
		t.Errorf("a removed webhook still received events: %d", n)
	}
}

// ajar jit enable --auto-approve-*: the conditions reach the policy;
// without --approvers they are refused; bad hours are refused naming the
// field.
func TestAutoApproveFlags(t *testing.T) {
	c := newCLI(t)
	c.must("group", "add", "prod")
	c.must("vm", "add", "db-7", "--group", "prod")
	if msg, _ := c.fails("jit", "enable", "db-7", "--port", "22", "--auto-approve-max", "1h"); !strings.Contains(msg, "--approvers") {
		t.Errorf("auto-approval without approvers: %s", msg)
	}
	if msg, _ := c.fails("jit", "enable", "db-7", "--port", "22", "--approvers", "1", "--auto-approve-hours", "8-18"); !strings.Contains(msg, "approval.autoApprove.hours") {
		t.Errorf("bad hours: %s", msg)
	}
	c.must("jit", "enable", "db-7", "--port", "22", "--approvers", "2", "--auto-approve-max", "1h", "--auto-approve-hours", "08-18", "--auto-approve-group", "oncall")
	var p jit.Policy
	c.json(&p, "jit", "show", "db-7")
	if p.Approval == nil || p.Approval.AutoApprove == nil || p.Approval.AutoApprove.MaxDuration != "PT1H" || p.Approval.AutoApprove.Hours != "08-18" ||
		len(p.Approval.AutoApprove.RequesterGroups) != 1 || p.Approval.AutoApprove.RequesterGroups[0] != "oncall" {
		t.Errorf("policy after enable: %+v", p.Approval)
	}
}
