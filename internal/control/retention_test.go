package control_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/logarchive"
)

// TestLogRetention lets ajard's own retention archive the events older
// than 400 days, twice, and checks the files chain from the first event
// to the checkpoint the log continues.
func TestLogRetention(t *testing.T) {
	ctx := context.Background()
	ctl, clk, admin, _ := setup(t)
	dir := filepath.Join(t.TempDir(), "archive")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keep := 400 * 24 * time.Hour

	// Nothing is that old yet.
	f, err := ctl.ArchiveOld(ctx, clk.now().Add(-keep), dir)
	if err != nil || f.Events != 0 {
		t.Fatalf("first round: %+v %v", f, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("an empty round left files: %v", left)
	}
	clk.add(200 * 24 * time.Hour)
	if _, err := ctl.CreateGroup(ctx, admin, "later"); err != nil {
		t.Fatal(err)
	}
	clk.add(250 * 24 * time.Hour) // the setup's events are 450 days old
	first, err := ctl.ArchiveOld(ctx, clk.now().Add(-keep), dir)
	if err != nil || first.Events == 0 || first.First != 1 {
		t.Fatalf("second round: %+v %v", first, err)
	}
	clk.add(200 * 24 * time.Hour) // "later" is 400+ days old too
	second, err := ctl.ArchiveOld(ctx, clk.now().Add(-keep), dir)
	if err != nil || second.First != first.Head.Seq+1 {
		t.Fatalf("third round: %+v %v", second, err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(names) != 2 {
		t.Fatalf("archive files: %v", names)
	}
	head, n, err := logarchive.Verify(names, nil)
	if err != nil || head != second.Head || n != first.Events+second.Events {
		t.Fatalf("archives: %s %d %v", head, n, err)
	}
	v, err := ctl.Verify(ctx, admin)
	if err != nil || !v.OK || v.ArchivedThrough == nil || *v.ArchivedThrough != head {
		t.Fatalf("log after retention: %+v %v", v, err)
	}
	// Each run is in the log, by the system.
	evs, _, err := ctl.ListEvents(ctx, admin, control.EventListFilter{Operation: jit.OpLogArchive})
	if err != nil || len(evs) != 2 || evs[0].Actor != "system" || evs[1].Actor != "system" {
		t.Fatalf("log.archive events left in the log: %+v %v", evs, err)
	}
}
