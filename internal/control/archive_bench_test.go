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
// of a SQLite log into a checked archive file (write, sync, check, remove
// from the store, log it); events/s is the figure.
func BenchmarkArchiveOld(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ajar.db"), log)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ctl := control.New(db, log, clk.now)
	dir := b.TempDir()
	const n = 10000
	details := []byte(`{"grant":"9713d2c27a8a7fab547da959c9c17975","port":22,"protocol":"TCP","source":"198.51.100.20/32","user":"alice","vm":"web-1"}`)
	var archived int64
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < n; i += 500 {
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
		clk.add(time.Hour)
		b.StartTimer()
		f, err := ctl.ArchiveOld(ctx, clk.now(), dir)
		if err != nil || f.Events < n {
			b.Fatalf("archived %+v: %v", f, err)
		}
		archived += f.Events
		b.StopTimer()
		os.Remove(f.Name)
		b.StartTimer()
	}
	b.ReportMetric(float64(archived)/b.Elapsed().Seconds(), "events/s")
}
