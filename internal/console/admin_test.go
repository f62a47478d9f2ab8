package console_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ajarhq/ajar/internal/jit"
)

// TestAdminPages does in the console what only the CLI did: create a
// user with a role, give and remove roles, reset a password, delete a
// user, create and revoke API tokens, and create an agent enrollment
// token whose command enrolls a host.
func TestAdminPages(t *testing.T) {
	ctx := newBrowser(t)
	shot := newShots(t)
	f := newFixture(t)
	base, api, bg := f.s.URL, f.s.Admin, context.Background()
	signInBrowser(t, ctx, base, "admin", adminPassword)

	run(t, ctx, "admin", click("#nav-admin"), visible("#new-user"),
		keys("#new-name", "carol"), keys("#new-password", "carol-password-123"),
		setValue("#new-role", jit.RoleRequester), setValue("#new-group", "prod"),
		click("#new-user-submit"))
	waitText(t, ctx, "#notice", "User carol created")
	mustContain(t, "users", textOf(t, ctx, `tr[data-user="carol"]`), "requester in prod")
	shot.take(ctx, "admin-users")
	carol := newHTTPUser(t, base)
	carol.signIn("carol", "carol-password-123")

	// A second role, then its removal.
	run(t, ctx, "give a role", setValue("#role-carol", jit.RoleReader), setValue("#group-carol", "dev"), click("#bind-carol"))
	waitText(t, ctx, "#notice", "Role given")
	mustContain(t, "carol's roles", textOf(t, ctx, `tr[data-user="carol"]`), "reader in dev")
	eval[bool](t, ctx, `(Array.from(document.querySelectorAll('tr[data-user="carol"] li')).find(li => li.textContent.includes('reader in dev')).querySelector('[data-unbind]').click(), true)`)
	var bs []jit.RoleBinding
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if bs, _ = api.ListRoleBindings(bg, "carol"); len(bs) == 1 {
			break
		}
	}
	if len(bs) != 1 || bs[0].Role != jit.RoleRequester {
		t.Errorf("carol's roles after removing one: %+v", bs)
	}
	run(t, ctx, "removed", chromedp.Navigate(base+"/admin/users"), visible(`tr[data-user="carol"]`))
	// A duplicate role is refused, with the reason.
	run(t, ctx, "duplicate", setValue("#role-carol", jit.RoleRequester), setValue("#group-carol", "prod"), click("#bind-carol"), visible("#admin-error"))

	// Reset the password.
	run(t, ctx, "reset", keys("#password-carol", "carol-new-password-1"), click(`tr[data-user="carol"] form[action$="/password"] button`))
	waitText(t, ctx, "#notice", "Password of carol set")
	carol.signIn("carol", "carol-new-password-1")

	// Tokens: create one for carol, shown once; revoke it.
	run(t, ctx, "tokens", click("#admin-tab-tokens"), visible("#new-token"),
		setValue("#token-user", "carol"), keys("#token-name", "ci"), click("#new-token-submit"), visible("#token-secret"))
	secret := eval[string](t, ctx, `document.querySelector('#token-secret').value`)
	if who, err := f.s.Client(secret).Whoami(bg); err != nil || who.User != "carol" {
		t.Fatalf("the token shown: %+v %v", who, err)
	}
	run(t, ctx, "reload", chromedp.Reload(), visible("#all-tokens"))
	if eval[bool](t, ctx, `!!document.querySelector('#token-secret')`) {
		t.Error("the token's secret is shown again after a reload")
	}
	ts, _ := api.ListTokens(bg, "carol")
	var id string
	for _, tk := range ts {
		if tk.Name == "ci" {
			id = tk.ID
		}
	}
	run(t, ctx, "revoke", click(`tr[data-token="`+id+`"] button`))
	waitText(t, ctx, "#notice", "Token revoked")
	if _, err := f.s.Client(secret).Whoami(bg); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Errorf("the revoked token still works: %v", err)
	}

	// Enrollment: the command shown enrolls a host.
	run(t, ctx, "enroll", click("#admin-tab-enroll"), visible("#new-enroll"), setValue("#enroll-group", "dev"), click("#new-enroll-submit"), visible("#enroll-command"))
	shot.take(ctx, "admin-enroll")
	cmd := eval[string](t, ctx, `document.querySelector('#enroll-command').value`)
	if !strings.HasPrefix(cmd, "ajar-agent enroll --server "+base+" --token ajar_") {
		t.Fatalf("enroll command %q", cmd)
	}
	tokenArg := strings.Fields(cmd)[5]
	if _, err := f.s.Client(tokenArg).Enroll(bg, jit.Enrollment{Name: "new-host", Hostname: "new-host.example", OS: "linux"}); err != nil {
		t.Errorf("enrolling with the token shown: %v", err)
	}

	// Delete carol: a confirmation page, then she is gone.
	run(t, ctx, "delete", click("#admin-tab-users"), visible(`tr[data-user="carol"]`),
		click(`tr[data-user="carol"] a[href$="/delete"]`), visible("#confirm"), click("#confirm"))
	waitText(t, ctx, "#notice", "User carol deleted")
	if eval[bool](t, ctx, `!!document.querySelector('tr[data-user="carol"]')`) {
		t.Error("carol is still listed after her deletion")
	}
	if st, _, _ := carol.get("/machines"); st != http.StatusSeeOther {
		t.Errorf("carol's session after her deletion: %d, want a redirect to sign in", st)
	}

	// A requester gets no admin pages.
	rachel := newHTTPUser(t, base)
	rachel.signIn("rachel", requesterPassword)
	if st, _, body := rachel.get("/admin/users"); st != http.StatusForbidden || strings.Contains(body, "new-user") {
		t.Errorf("a requester on the admin users page: %d", st)
	}
	if _, _, body := rachel.get("/machines"); strings.Contains(body, "nav-admin") {
		t.Error("a requester sees the Admin link")
	}
}
