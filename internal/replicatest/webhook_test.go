package replicatest

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/loadbench"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
	"github.com/ajarhq/ajar/internal/webhook/webhooktest"
)

// TestWebhookAcrossReplicas: with two replicas on one database, requests
// made through both reach one webhook; the replica delivering is killed
// with SIGKILL mid-load, and the other takes over. The receiver gets every
// event, whichever replica logged it, exactly once after deduplication.
func TestWebhookAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	args := []string{"--log-level", "info", "--webhook-timeout", "300ms", "--webhook-retry-min", "50ms"}
	a := ajardtest.Start(t, ajardtest.Options{DB: dsn, Args: args})
	b := ajardtest.Start(t, ajardtest.Options{DB: dsn, Args: args})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica A log:\n%s", tail(a.Log.String(), 4000))
			t.Logf("replica B log:\n%s", tail(b.Log.String(), 4000))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const secret = "replica-test-secret-0123456789"
	rcv := webhooktest.Start(t, secret)
	var accepted atomic.Int64
	rcv.Answer = func(string, int) webhooktest.Answer {
		accepted.Add(1)
		return webhooktest.Answer{Delay: 5 * time.Millisecond}
	}
	h, err := a.Admin.CreateWebhook(ctx, jit.NewWebhook{URL: rcv.URL, Secret: secret, Events: []string{jit.KindRequestApproved, jit.KindGrantOpened}})
	if err != nil {
		t.Fatal(err)
	}
	token, vms, err := loadbench.Setup(ctx, a.Admin, 5)
	if err != nil {
		t.Fatal(err)
	}

	// The leader says so in its log once it leads.
	var leader, other *ajardtest.Server
	for deadline := time.Now().Add(30 * time.Second); leader == nil; time.Sleep(50 * time.Millisecond) {
		switch {
		case strings.Contains(a.Log.String(), "this server delivers webhooks"):
			leader, other = a, b
		case strings.Contains(b.Log.String(), "this server delivers webhooks"):
			leader, other = b, a
		case time.Now().After(deadline):
			t.Fatal("no replica leads the webhooks")
		}
	}
	const total = 120
	clients := []*client.Client{a.Client(token), b.Client(token)}
	acks, failed, firstErr := load(ctx, clients, vms, 4, total/2, "PT1H", nil)
	if len(acks) != total/2 {
		t.Fatalf("first half: %d acknowledged, failed %v (%v)", len(acks), failed, firstErr)
	}
	for accepted.Load() < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	leader.Kill()
	t.Logf("killed the leader after %d deliveries", accepted.Load())
	// The second half goes through the survivor only.
	more, failed, firstErr := load(ctx, []*client.Client{other.Client(token)}, vms, 4, total/2, "PT2H", nil)
	if len(more) != total/2 {
		t.Fatalf("second half: %d acknowledged, failed %v (%v)", len(more), failed, firstErr)
	}

	var want []string
	for _, op := range []string{jit.OpRequestApprove, jit.OpGrantOpen} {
		for _, e := range eventsOf(ctx, t, other.Admin, op) {
			if e.Seq > h.Cursor && h.Wants(jit.NotificationKind(&e), e.Group) {
				want = append(want, e.Hash)
			}
		}
	}
	if len(want) != 2*total {
		t.Fatalf("%d events to deliver, want %d", len(want), 2*total)
	}
	if !rcv.WaitFor(want, 60*time.Second) {
		t.Fatalf("received %d of %d events", len(rcv.Accepted()), len(want))
	}
	time.Sleep(300 * time.Millisecond)
	n, dups, bad := rcv.Stats()
	t.Logf("%d events; %d accepted, %d of them duplicates", len(want), n, dups)
	if got := rcv.Accepted(); len(got) != len(want) {
		t.Errorf("received %d distinct events, want %d", len(got), len(want))
	}
	if len(bad) > 0 {
		t.Errorf("refused signatures: %v", bad)
	}
	if !strings.Contains(other.Log.String(), "this server delivers webhooks") {
		t.Error("the survivor never took the lead")
	}
}
