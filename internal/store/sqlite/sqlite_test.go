package sqlite_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
	"github.com/ajarhq/ajar/internal/store/storetest"
)

func TestCompliance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sub", "ajar.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestLogStartsOver checks that the write-ahead log, which the writer does
// not checkpoint after each commit, is still written over from its
// beginning under steady writes (a checkpoint running beside the writer
// never catches up with it alone): a log that only grew would fill the
// disk. Its file, 0.6 s into 2.4 s of steady writes, must not grow past
// twice that size.
func TestLogStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	db, err := sqlite.Open(context.Background(), path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	pad, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 2000)})
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 20000 && time.Since(start) < 2400*time.Millisecond; i++ {
				if err := db.Update(ctx, func(tx store.Tx) error {
					return tx.AppendEvent(&jit.Event{Time: time.Now(), Actor: "test", Operation: "test.write", Outcome: jit.OutcomeSuccess, Details: pad})
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	size := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	time.Sleep(600 * time.Millisecond)
	early := size()
	wg.Wait()
	late := size()
	t.Logf("log file: %d bytes at 0.6 s, %d at the end", early, late)
	if early < 100*2000 {
		t.Fatalf("the log is %d bytes after 0.6 s of writes: the test proves nothing", early)
	}
	if late > 2*early {
		t.Fatalf("the log file grew from %d bytes at 0.6 s to %d at 2.4 s of steady writes: it does not start over", early, late)
	}
}
