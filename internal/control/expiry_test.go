package control_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// feedStore is a real store whose change feed the test hands out.
type feedStore struct {
	store.Store
	feed chan string
}

func (s feedStore) Changes(context.Context) <-chan string { return s.feed }

// The expirer stops when its change feed closes while it takes the
// changes already waiting (the feed closes when the server stops): it
// used to spin on the closed channel for ever, and a stopping ajard
// with it.
func TestExpirerStopsOnAClosedFeed(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	feed := make(chan string, 1)
	feed <- "vm-1" // a change, then the end of the feed
	close(feed)
	ctl := control.New(feedStore{Store: db, feed: feed}, log, time.Now)
	done := make(chan error, 1)
	go func() { done <- ctl.RunExpirer(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunExpirer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunExpirer still runs 10 s after its change feed closed")
	}
}
