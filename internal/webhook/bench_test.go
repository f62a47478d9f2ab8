package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
	"github.com/ajarhq/ajar/internal/webhook"
)

// benchWorld is a deliverer over a SQLite database with one plain webhook
// to a loopback receiver that notes when each event arrives.
type benchWorld struct {
	st      store.Store // the watched store: commits kick the deliverer
	mu      sync.Mutex
	arrived map[int64]time.Time
	signal  chan struct{}
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "ajar.db"), log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	w := &benchWorld{arrived: map[int64]time.Time{}, signal: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seq, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderEventSeq), 10, 64)
		now := time.Now()
		w.mu.Lock()
		if _, ok := w.arrived[seq]; !ok {
			w.arrived[seq] = now
		}
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	d := webhook.New(db, log, webhook.Config{})
	w.st = d.Watch(db)
	err = db.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateWebhook(jit.Webhook{ID: "bench", URL: srv.URL, Format: jit.FormatPlain, Events: []string{jit.KindGrantOpened},
			Groups: []string{}, CreatedAt: time.Now(), Secret: "bench-secret-0123456789"})
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// commit appends n grant.opened events in one transaction and returns
// their sequence numbers once it is durable.
func (w *benchWorld) commit(b *testing.B, n int) []int64 {
	events := make([]*jit.Event, n)
	for i := range events {
		events[i] = &jit.Event{Time: time.Now(), Actor: "bench", VMID: "vm1", Group: "bench", Operation: jit.OpGrantOpen,
			Outcome: jit.OutcomeSuccess, Details: json.RawMessage(`{"port":22,"protocol":"TCP","source":"192.0.2.1/32","user":"bench"}`)}
	}
	if err := w.st.Update(context.Background(), func(tx store.Tx) error { return tx.AppendEvent(events...) }); err != nil {
		b.Fatal(err)
	}
	seqs := make([]int64, n)
	for i, e := range events {
		seqs[i] = e.Seq
	}
	return seqs
}

func (w *benchWorld) wait(b *testing.B, seqs []int64) {
	deadline := time.After(time.Minute)
	for {
		w.mu.Lock()
		all := true
		for _, s := range seqs {
			if _, ok := w.arrived[s]; !ok {
				all = false
				break
			}
		}
		w.mu.Unlock()
		if all {
			return
		}
		select {
		case <-w.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			b.Fatal("events did not arrive within a minute")
		}
	}
}

// BenchmarkDeliveryLatency: one event committed at a time; the time from
// its commit (the update returned) to its arrival at the receiver.
func BenchmarkDeliveryLatency(b *testing.B) {
	w := newBenchWorld(b)
	var lat []time.Duration
	for b.Loop() {
		seqs := w.commit(b, 1)
		committed := time.Now()
		w.wait(b, seqs)
		w.mu.Lock()
		lat = append(lat, w.arrived[seqs[0]].Sub(committed))
		w.mu.Unlock()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkDeliveryThroughput: bursts of 1,000 events (10 commits of 100)
// to one webhook; deliveries/s from the first commit to the last arrival.
func BenchmarkDeliveryThroughput(b *testing.B) {
	w := newBenchWorld(b)
	total, start := 0, time.Now()
	for b.Loop() {
		var seqs []int64
		for range 10 {
			seqs = append(seqs, w.commit(b, 100)...)
		}
		w.wait(b, seqs)
		total += len(seqs)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "deliveries/s")
}
