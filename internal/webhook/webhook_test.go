package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
	"github.com/ajarhq/ajar/internal/webhook"
	"github.com/ajarhq/ajar/internal/webhook/webhooktest"
)

const secret = "test-secret-0123456789abcdef"

// world is a control plane over a real SQLite database with a deliverer
// watching it, an admin, group prod with VM db-7 under a JIT policy, and
// group dev.
type world struct {
	ctl   *control.Control
	d     *webhook.Deliverer
	admin *control.Actor
	vm    jit.VM
}

func newWorld(t *testing.T, cfg webhook.Config) *world {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	w := &world{d: webhook.New(db, log, cfg)}
	w.ctl = control.New(w.d.Watch(db), log, time.Now)
	tok, err := w.ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if w.admin, err = w.ctl.Authenticate(ctx, tok, netip.MustParseAddr("198.51.100.7")); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"prod", "dev"} {
		if _, err := w.ctl.CreateGroup(ctx, w.admin, g); err != nil {
			t.Fatal(err)
		}
	}
	if w.vm, err = w.ctl.CreateVM(ctx, w.admin, jit.NewVM{Name: "db-7", Group: "prod"}); err != nil {
		t.Fatal(err)
	}
	return w
}

// run runs the deliverer until the test ends.
func (w *world) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// activity makes events of several kinds: a policy set on db-7 (and on a
// VM of dev), a request (approved, a grant opened) and its grant revoked.
func (w *world) activity(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := w.ctl.PutPolicy(ctx, w.admin, w.vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	dev, err := w.ctl.CreateVM(ctx, w.admin, jit.NewVM{Name: "web-1", Group: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.PutPolicy(ctx, w.admin, dev.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := w.ctl.RequestAccess(ctx, w.admin, jit.AccessRequest{Justification: "deploy", VirtualMachines: []jit.VMRequest{{ID: w.vm.ID,
		Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.Revoke(ctx, w.admin, r.Grants[0].ID); err != nil {
		t.Fatal(err)
	}
}

// expected returns the ids (hashes) of the events after seq that a
// webhook of kinds and groups is told of.
func (w *world) expected(t *testing.T, after int64, h jit.Webhook) []string {
	t.Helper()
	var ids []string
	err := w.ctl.Store().View(context.Background(), func(tx store.Tx) error {
		return tx.WalkEvents(func(e *jit.Event) bool {
			if e.Seq > after && h.Wants(jit.NotificationKind(e), e.Group) {
				ids = append(ids, e.Hash)
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (w *world) hook(t *testing.T, in jit.NewWebhook) jit.CreatedWebhook {
	t.Helper()
	h, err := w.ctl.CreateWebhook(context.Background(), w.admin, in)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRetriesAfterErrorsAndTimeouts: every event first gets a 500, then
// no answer within the timeout, then is accepted: each arrives signed,
// exactly once accepted, on its third attempt, and its delivery says so.
// A second webhook, for group dev's policy changes only, gets those and
// nothing else.
func TestRetriesAfterErrorsAndTimeouts(t *testing.T) {
	w := newWorld(t, webhook.Config{Timeout: 300 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	rcv := webhooktest.Start(t, secret)
	rcv.Answer = func(id string, n int) webhooktest.Answer {
		switch n {
		case 1:
			return webhooktest.Answer{Status: http.StatusInternalServerError}
		case 2:
			return webhooktest.Answer{Delay: 2 * time.Second}
		}
		return webhooktest.Answer{}
	}
	all := w.hook(t, jit.NewWebhook{URL: rcv.URL, Secret: secret})
	devRcv := webhooktest.Start(t, "another-secret-0123456789")
	dev := w.hook(t, jit.NewWebhook{URL: devRcv.URL, Secret: "another-secret-0123456789", Events: []string{jit.KindPolicyChanged}, Groups: []string{"dev"}})
	w.run(t)
	w.activity(t)

	want := w.expected(t, all.Cursor, all.Webhook)
	kinds := map[string]bool{}
	for _, r := range []string{jit.KindPolicyChanged, jit.KindRequestApproved, jit.KindGrantOpened, jit.KindGrantEnded} {
		kinds[r] = false
	}
	if len(want) < 5 {
		t.Fatalf("only %d events to deliver", len(want))
	}
	if !rcv.WaitFor(want, 20*time.Second) {
		t.Fatalf("received %d of %d events", len(rcv.Accepted()), len(want))
	}
	got := rcv.Accepted()
	for _, id := range want {
		r := got[id]
		kinds[r.Kind] = true
		if r.Attempt != 3 || rcv.Seen(id) != 3 {
			t.Errorf("event %d (%s): accepted on attempt %d after %d deliveries, want the third", r.Seq, r.Kind, r.Attempt, rcv.Seen(id))
		}
		var n webhook.Notification
		if err := json.Unmarshal(r.Body, &n); err != nil || n.ID != id || n.Seq != r.Seq || n.Kind != r.Kind || n.Event.Hash != id || n.Text == "" {
			t.Errorf("event %d: body %s does not describe it (%v)", r.Seq, r.Body, err)
		}
	}
	for k, ok := range kinds {
		if !ok {
			t.Errorf("no %s event delivered", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("received %d events, want %d", len(got), len(want))
	}
	total, dups, bad := rcv.Stats()
	if dups != 0 || len(bad) != 0 {
		t.Errorf("%d accepted, %d duplicates, refused signatures %v", total, dups, bad)
	}

	// The delivery log says the same once the outcomes are recorded.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ds, _, err := w.ctl.ListDeliveries(context.Background(), w.admin, all.ID, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		done := len(ds) == len(want)
		for _, d := range ds {
			done = done && d.Status == jit.DeliveryDelivered && d.Attempts == 3 && d.DeliveredAt != nil && strings.Contains(d.LastError, "") && d.LastStatusCode/100 == 2
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries = %+v, want %d delivered on the third attempt", ds, len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}

	wantDev := w.expected(t, dev.Cursor, dev.Webhook)
	if len(wantDev) != 1 {
		t.Fatalf("dev webhook: %d events expected, want 1 (the policy of web-1)", len(wantDev))
	}
	if !devRcv.WaitFor(wantDev, 10*time.Second) {
		t.Fatal("dev webhook: its event did not arrive")
	}
	time.Sleep(200 * time.Millisecond)
	if got := devRcv.Accepted(); len(got) != 1 || got[wantDev[0]].Kind != jit.KindPolicyChanged {
		t.Errorf("dev webhook received %+v, want the one policy change", got)
	}
}

// TestGivesUp: a receiver that always fails gets MaxAttempts attempts per
// event; the delivery is then failed with the last error and status, and
// later events are still delivered.
func TestGivesUp(t *testing.T) {
	w := newWorld(t, webhook.Config{MaxAttempts: 2, Timeout: time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	rcv := webhooktest.Start(t, secret)
	var mu sync.Mutex
	failing := true
	rcv.Answer = func(string, int) webhooktest.Answer {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return webhooktest.Answer{Status: http.StatusBadGateway}
		}
		return webhooktest.Answer{}
	}
	h := w.hook(t, jit.NewWebhook{URL: rcv.URL, Secret: secret, Events: []string{jit.KindPolicyChanged}})
	w.run(t)
	ctx := context.Background()
	if _, err := w.ctl.PutPolicy(ctx, w.admin, w.vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT3H"}}}); err != nil {
		t.Fatal(err)
	}
	var first jit.Delivery
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, _, err := w.ctl.ListDeliveries(ctx, w.admin, h.ID, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].Status == jit.DeliveryFailed {
			first = ds[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries = %+v, want one failed", ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first.Attempts != 2 || first.LastStatusCode != http.StatusBadGateway || !strings.Contains(first.LastError, "502") {
		t.Errorf("failed delivery = %+v, want 2 attempts, last answered 502", first)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if _, err := w.ctl.PutPolicy(ctx, w.admin, w.vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", MaxRequestAccessDuration: "PT2H"}}}); err != nil {
		t.Fatal(err)
	}
	want := w.expected(t, first.Seq, h.Webhook)
	if len(want) != 1 || !rcv.WaitFor(want, 10*time.Second) {
		t.Fatalf("the event after the failed one did not arrive (%d expected)", len(want))
	}
	if n := rcv.Seen(w.expected(t, h.Cursor, h.Webhook)[0]); n != 2 {
		t.Errorf("the failed event was sent %d times, want 2", n)
	}
}

// TestWebhookAdmin: only admins manage webhooks; bad input is refused
// naming the field and creates nothing; the secret is shown at creation
// only and never logged; each change is an activity event.
func TestWebhookAdmin(t *testing.T) {
	w := newWorld(t, webhook.Config{})
	ctx := context.Background()
	for _, c := range []struct {
		in     jit.NewWebhook
		target string
	}{
		{jit.NewWebhook{URL: ""}, "url"},
		{jit.NewWebhook{URL: "ftp://hooks.example.com/x"}, "url"},
		{jit.NewWebhook{URL: "http://hooks.example.com/x"}, "url"},
		{jit.NewWebhook{URL: "https://user:pw@hooks.example.com/x"}, "url"},
		{jit.NewWebhook{URL: "hooks.example.com/x"}, "url"},
		{jit.NewWebhook{URL: "https://hooks.example.com/" + strings.Repeat("a", jit.MaxWebhookURL)}, "url"},
		{jit.NewWebhook{URL: "https://hooks.example.com/x", Format: "email"}, "format"},
		{jit.NewWebhook{URL: "https://hooks.example.com/x", Events: []string{"grant.open"}}, "events"},
		{jit.NewWebhook{URL: "https://hooks.example.com/x", Groups: []string{"nope"}}, "groups"},
		{jit.NewWebhook{URL: "https://hooks.example.com/x", Groups: []string{"*"}}, "groups"},
		{jit.NewWebhook{URL: "https://hooks.example.com/x", Secret: "short"}, "secret"},
	} {
		_, err := w.ctl.CreateWebhook(ctx, w.admin, c.in)
		if jit.ErrorCode(err) == "" || jit.ErrorTarget(err) != c.target {
			t.Errorf("CreateWebhook(%+v) = %v, want an error naming %s", c.in, err, c.target)
		}
	}
	if hs, err := w.ctl.ListWebhooks(ctx, w.admin); err != nil || len(hs) != 0 {
		t.Fatalf("after refusals: webhooks %+v, %v", hs, err)
	}

	reader := userActor(t, w, "rita", jit.RoleJITAdmin)
	if _, err := w.ctl.CreateWebhook(ctx, reader, jit.NewWebhook{URL: "https://hooks.example.com/x"}); jit.ErrorCode(err) != jit.EForbidden {
		t.Errorf("a jit-admin creating a webhook: %v, want forbidden", err)
	}
	if _, err := w.ctl.ListWebhooks(ctx, reader); jit.ErrorCode(err) != jit.EForbidden {
		t.Errorf("a jit-admin listing webhooks: %v, want forbidden", err)
	}

	h, err := w.ctl.CreateWebhook(ctx, w.admin, jit.NewWebhook{URL: "https://hooks.example.com/x", Format: jit.FormatSlack, Groups: []string{"prod", "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Secret, "whsec_") || len(h.Secret) < 40 || len(h.Events) != len(jit.NotificationKinds) || !slices.Equal(h.Groups, []string{"prod"}) {
		t.Errorf("created %+v: want a generated secret, every kind, group prod once", h)
	}
	if _, err := w.ctl.CreateWebhook(ctx, w.admin, jit.NewWebhook{URL: "http://127.0.0.1:9/x"}); err != nil {
		t.Errorf("http to loopback: %v", err)
	}
	hs, err := w.ctl.ListWebhooks(ctx, w.admin)
	if err != nil || len(hs) != 2 {
		t.Fatalf("webhooks %+v, %v", hs, err)
	}
	for _, l := range hs {
		if l.Secret != "" {
			t.Errorf("listed webhook %s shows its secret", l.ID)
		}
	}
	if err := w.ctl.DeleteWebhook(ctx, w.admin, h.ID); err != nil {
		t.Fatal(err)
	}
	if err := w.ctl.DeleteWebhook(ctx, w.admin, h.ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("deleting again: %v, want not found", err)
	}
	if _, _, err := w.ctl.ListDeliveries(ctx, w.admin, h.ID, 0, ""); jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("deliveries of a deleted webhook: %v, want not found", err)
	}
	evs, _, err := w.ctl.ListEvents(ctx, w.admin, control.EventListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, e := range evs {
		ops[e.Operation]++
		if strings.Contains(string(e.Details), h.Secret) || strings.Contains(string(e.Details), "/x") {
			t.Errorf("event %d (%s) holds the secret or the URL's path: %s", e.Seq, e.Operation, e.Details)
		}
	}
	if ops[jit.OpWebhookCreate] != 2 || ops[jit.OpWebhookDelete] != 1 {
		t.Errorf("webhook events: %d created, %d deleted; want 2 and 1", ops[jit.OpWebhookCreate], ops[jit.OpWebhookDelete])
	}
}

func userActor(t *testing.T, w *world, name, role string) *control.Actor {
	t.Helper()
	ctx := context.Background()
	if _, err := w.ctl.CreateUser(ctx, w.admin, jit.NewUser{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.CreateRoleBinding(ctx, w.admin, jit.RoleBinding{User: name, Role: role, Group: "prod"}); err != nil {
		t.Fatal(err)
	}
	tk, err := w.ctl.CreateToken(ctx, w.admin, jit.NewToken{User: name})
	if err != nil {
		t.Fatal(err)
	}
	a, err := w.ctl.Authenticate(ctx, tk.Secret, netip.MustParseAddr("198.51.100.9"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSignature: Verify accepts what Sign makes, and refuses another body,
// another secret, and a timestamp outside the replay window.
func TestSignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"kind":"request.pending"}`)
	h := webhook.Sign(secret, now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("signature header %q", h)
	}
	if err := webhook.Verify(secret, h, body, now.Add(time.Minute), webhook.ReplayWindow); err != nil {
		t.Errorf("valid signature refused: %v", err)
	}
	for name, err := range map[string]error{
		"another body":    webhook.Verify(secret, h, []byte(`{"kind":"request.approved"}`), now, webhook.ReplayWindow),
		"another secret":  webhook.Verify("another-secret-0123456789", h, body, now, webhook.ReplayWindow),
		"too old":         webhook.Verify(secret, h, body, now.Add(6*time.Minute), webhook.ReplayWindow),
		"from the future": webhook.Verify(secret, h, body, now.Add(-6*time.Minute), webhook.ReplayWindow),
		"malformed":       webhook.Verify(secret, "v1=00", body, now, webhook.ReplayWindow),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// countingStore counts read transactions.
type countingStore struct {
	store.Store
	views atomic.Int64
}

func (c *countingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, fn)
}

// TestNoWebhooksNoReadPerCommit checks that, with no webhook configured,
// the deliverer does not read the database after every commit (which
// cost a read per access request for nothing): it looks at most once a
// second.
func TestNoWebhooksNoReadPerCommit(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	counted := &countingStore{Store: db}
	w := &world{d: webhook.New(counted, log, webhook.Config{Poll: time.Hour})}
	w.ctl = control.New(w.d.Watch(db), log, time.Now)
	tok, err := w.ctl.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if w.admin, err = w.ctl.Authenticate(ctx, tok, netip.MustParseAddr("198.51.100.7")); err != nil {
		t.Fatal(err)
	}
	w.run(t)
	time.Sleep(100 * time.Millisecond)
	before := counted.views.Load()
	start := time.Now()
	for i := range 100 {
		if _, err := w.ctl.CreateGroup(ctx, w.admin, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	reads, secs := counted.views.Load()-before, time.Since(start).Seconds()
	if limit := int64(secs) + 2; reads > limit {
		t.Fatalf("the deliverer read the database %d times during 100 commits in %.1f s with no webhook; at most %d expected", reads, secs, limit)
	}
}
