package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/logarchive"
)

// ArchiveOld moves the events before before out of the log into a new
// archive file in dir (ajar-log-until-TIME.jsonl), as ajar log archive
// does, on ajard's own behalf: the file is written, synced and checked
// before the events leave the log. It returns the file (with no events,
// and none written, when nothing was that old).
func (c *Control) ArchiveOld(ctx context.Context, before time.Time, dir string) (logarchive.File, error) {
	name := filepath.Join(dir, "ajar-log-until-"+before.UTC().Format("2006-01-02T150405Z")+".jsonl")
	f, err := logarchive.Write(name, func(w io.Writer) error {
		enc := json.NewEncoder(w) // as the API's export writes them
		return c.exportArchive(ctx, before, func(e *jit.Event) error { return enc.Encode(e) })
	})
	if err != nil || f.Events == 0 {
		return f, err
	}
	if _, err := c.confirmArchive(ctx, nil, jit.ArchiveConfirm{From: f.First, Through: f.Head, Before: before}); err != nil {
		return f, fmt.Errorf("%s holds the events, but they were not removed from the log: %w", name, err)
	}
	return f, nil
}

// RunLogRetention archives, every interval, the events older than keep
// into dir, while this server leads the work among the servers sharing
// the database (one at a time), until ctx ends.
func (c *Control) RunLogRetention(ctx context.Context, keep time.Duration, dir string, every time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("log archive folder: %w", err)
	}
	for {
		lost, err := c.store.Lead(ctx, "log-retention")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t := time.NewTimer(0)
		for leading := true; leading; {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-lost:
				leading = false
				continue
			case <-t.C:
			}
			f, err := c.ArchiveOld(ctx, c.Now().Add(-keep), dir)
			switch {
			case err != nil && ctx.Err() == nil:
				c.log.Error("log retention: archive failed", "err", err)
			case f.Events > 0:
				c.log.Info("log retention: archived", "file", f.Name, "events", f.Events, "through", f.Head.String())
			}
			t.Reset(every)
		}
		t.Stop()
	}
}
