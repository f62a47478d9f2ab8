package control_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// BenchmarkArchiveOld measures ajard's retention moving 10,000 events out
// of a SQLite log that also keeps 50,000 newer ones into a checked archive
// file (read, write, sync, check, remove from the store, log it); events/s
// is the figure. Run it with -benchtime of at most 10x (the log holds ten
// rounds of old events).
func BenchmarkArchiveOld(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ajar.db"), log)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: start}
	ctl := control.New(db, log, clk.now)
	dir := b.TempDir()
	const n, rounds, recent = 10000, 10, 50000
	details := []byte(`{"grant":"9713d2c27a8a7fab547da959c9c17975","port":22,"protocol":"TCP","source":"198.51.100.20/32","user":"alice","vm":"web-1"}`)
	fill := func(count int) {
		for i := 0; i < count; i += 500 {
			err := db.Update(ctx, func(tx store.Tx) error {
				evs := make([]*jit.Event, 500)
				for j := range evs {
					evs[j] = &jit.Event{Time: clk.now(), Actor: "alice", ActorAddress: "198.51.100.20", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess, Details: details}
				}
				return tx.AppendEvent(evs...)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for range rounds { // round r's events at hour r
		fill(n)
		clk.add(time.Hour)
	}
	fill(recent)
	var archived int64
	round := 0
	for b.Loop() {
		if round++; round > rounds {
			b.Fatalf("more than %d rounds: use -benchtime %dx or less", rounds, rounds)
		}
		f, err := ctl.ArchiveOld(ctx, start.Add(time.Duration(round)*time.Hour), dir)
		if err != nil || f.Events != n {
			b.Fatalf("archived %+v: %v", f, err)
		}
		archived += f.Events
		b.StopTimer()
		os.Remove(f.Name)
		b.StartTimer()
	}
	b.ReportMetric(float64(archived)/b.Elapsed().Seconds(), "events/s")
}
