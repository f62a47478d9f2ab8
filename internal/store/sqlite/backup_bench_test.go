package sqlite

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// BenchmarkBackup measures ajard backup's copy (VACUUM INTO) of a
// database holding 100,000 activity events, the figure an operator sizes
// a backup window with; MB/s is the database's size over the time.
func BenchmarkBackup(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	path := filepath.Join(dir, "ajar.db")
	db, err := Open(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	details := []byte(`{"grant":"9713d2c27a8a7fab547da959c9c17975","port":22,"protocol":"TCP","source":"198.51.100.20/32","user":"alice","vm":"web-1"}`)
	for range 200 {
		err := db.Update(ctx, func(tx store.Tx) error {
			evs := make([]*jit.Event, 500)
			for j := range evs {
				evs[j] = &jit.Event{Time: time.Now(), Actor: "alice", ActorAddress: "198.51.100.20", Operation: jit.OpGrantOpen, Outcome: jit.OutcomeSuccess, Details: details}
			}
			return tx.AppendEvent(evs...)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	var size int64
	for b.Loop() {
		i++
		dest := filepath.Join(dir, "backup-"+time.Now().Format("150405.000000000")+".db")
		if err := Backup(ctx, path, dest); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		fi, err := os.Stat(dest)
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
		os.Remove(dest)
		b.StartTimer()
	}
	b.SetBytes(size)
}
