package apitest

import (
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/webhook/webhooktest"
)

// TestWebhookSurvivesKill kills ajard with SIGKILL while it delivers to a
// webhook, with deliveries queued and one in flight, and restarts it: the
// receiver gets every event the webhook subscribed to, before and after
// the crash, exactly once after deduplication on Ajar-Event-Id, and
// nothing else.
func TestWebhookSurvivesKill(t *testing.T) {
	t.Parallel()
	s := ajardtest.Start(t, ajardtest.Options{Args: []string{"--webhook-timeout", "300ms", "--webhook-retry-min", "50ms"}})
	const secret = "kill-test-secret-0123456789"
	rcv := webhooktest.Start(t, secret)
	rcv.Answer = func(string, int) webhooktest.Answer { return webhooktest.Answer{Delay: 60 * time.Millisecond} }
	h, err := s.Admin.CreateWebhook(t.Context(), jit.NewWebhook{URL: rcv.URL, Secret: secret,
		Events: []string{jit.KindPolicyChanged, jit.KindRequestApproved, jit.KindGrantOpened, jit.KindGrantEnded}})
	if err != nil {
		t.Fatal(err)
	}
	group(t, s, "prod")
	v := vm(t, s.Admin, "prod", "db-7")
	policy(t, s.Admin, v.ID, false, rule(22, "TCP", "PT1H"))
	// Each request supersedes the one before: approved, opened, ended.
	for range 15 {
		request(t, s.Admin, v.ID, port(22, "PT1H"))
	}
	for len(rcv.Accepted()) < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	before := len(rcv.Accepted())
	s.Restart()
	for range 5 {
		request(t, s.Admin, v.ID, port(22, "PT1H"))
	}

	want := expectedEvents(t, s.Admin, h.Webhook)
	if before >= len(want)-10 {
		t.Fatalf("%d of %d events were delivered before the kill; the test wants most still queued", before, len(want))
	}
	if !rcv.WaitFor(want, 60*time.Second) {
		t.Fatalf("received %d of %d events", len(rcv.Accepted()), len(want))
	}
	time.Sleep(300 * time.Millisecond) // room for a stray extra delivery to show up
	got := rcv.Accepted()
	if len(got) != len(want) {
		t.Errorf("received %d distinct events, want %d", len(got), len(want))
	}
	resent := 0
	for _, id := range want {
		if rcv.Seen(id) > 1 {
			resent++
		}
	}
	total, dups, bad := rcv.Stats()
	t.Logf("%d events, %d delivered before the kill, %d sent more than once, %d accepted (%d duplicates)", len(want), before, resent, total, dups)
	if len(bad) > 0 {
		t.Errorf("refused signatures: %v", bad)
	}
	if resent == 0 && dups == 0 {
		t.Error("no delivery was in flight at the kill (nothing was sent twice)")
	}
	wantVerified(t, s)
}

// expectedEvents returns the ids of the events in the activity log a
// webhook subscribed to.
func expectedEvents(t *testing.T, c *client.Client, h jit.Webhook) []string {
	t.Helper()
	var ids []string
	for after := h.Cursor; ; {
		page, err := c.ListEvents(t.Context(), client.EventQuery{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i := range page {
			if h.Wants(jit.NotificationKind(&page[i]), page[i].Group) {
				ids = append(ids, page[i].Hash)
			}
		}
		if len(page) < 1000 {
			return ids
		}
		after = page[len(page)-1].Seq
	}
}
