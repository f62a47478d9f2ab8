package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) logArchiveCommand() *cobra.Command {
	var before, to string
	cmd := &cobra.Command{
		Use:   "archive --before DATE --to FILE",
		Short: "Move the events before a date out of the activity log into a file (admins)",
		Long: `archive writes the activity events before DATE (2026-01-02, an RFC 3339 time, or a
duration ago such as 400d) to FILE as JSON lines with their hashes, checks the file's
chain, and only then has the server remove them from the log. The server keeps the
last archived event's sequence number and hash as the log's checkpoint: 'ajar log
verify' proves the log continues it, and 'ajar log verify --archive FILE...' proves the
archives too, from the log's first event. Keep the files: they are the evidence.
FILE must not exist yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if before == "" || to == "" {
				return errors.New("give --before DATE and --to FILE")
			}
			cut, err := parseDate("before", before, time.Now())
			if err != nil {
				return err
			}
			if _, err := os.Lstat(to); err == nil {
				return fmt.Errorf("--to: %s exists; archives are never overwritten", to)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			partial := to + ".partial"
			f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer os.Remove(partial)
			err = c.ExportArchive(ctx, cut, f)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("download the archive: %w", err)
			}
			arch, err := readArchive(partial)
			if err != nil {
				return err
			}
			if arch.events == 0 {
				fmt.Fprintf(a.stdout, "Nothing to archive: no event before %s is left in the log.\n", cut.UTC().Format(time.RFC3339))
				return nil
			}
			if arch.problem != "" {
				return fmt.Errorf("the downloaded archive does not verify, so nothing was removed: %s", arch.problem)
			}
			if err := os.Link(partial, to); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if err := syncDir(to); err != nil {
				return err
			}
			done, err := c.ConfirmArchive(ctx, jit.ArchiveConfirm{From: arch.first, Through: arch.head, Before: cut})
			if err != nil {
				return fmt.Errorf("%s holds the events, but the server did not remove them: %w", to, err)
			}
			if a.asJSON() {
				return a.printJSON(done)
			}
			fmt.Fprintf(a.stdout, "Archived events %d to %d (%d) to %s.\nThe log now continues %s.\n",
				arch.first, arch.head.Seq, done.Removed, to, done.ArchivedThrough)
			return nil
		},
	}
	cmd.Flags().StringVar(&before, "before", "", "archive the events before this date (2026-01-02, RFC 3339, or a duration ago such as 400d)")
	cmd.Flags().StringVar(&to, "to", "", "the archive file to write (JSON lines; must not exist)")
	return cmd
}

// parseDate reads a date (2026-01-02, midnight UTC), an RFC 3339 time or
// a duration ago.
func parseDate(flag, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return parseTime(flag, s, now)
}

// syncDir makes the name of file durable.
func syncDir(file string) error {
	d, err := os.Open(filepath.Dir(file))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// archive is what one archive file holds: the events first to head, and
// the chain's first problem ("" when every event links to the one before
// and matches its hash).
type archive struct {
	name    string
	first   int64
	prev    string // the first event's link to the one before it
	head    jit.Anchor
	events  int64
	problem string
}

// readArchive reads and checks an archive file on its own: each event
// links to the one before it, starting from the first one's link.
func readArchive(name string) (archive, error) {
	ar := archive{name: name}
	var v *jit.ChainVerifier
	err := walkArchive(name, func(e *jit.Event) bool {
		if v == nil {
			ar.first, ar.prev = e.Seq, e.PrevHash
			v = &jit.ChainVerifier{Start: &jit.Anchor{Seq: e.Seq - 1, Hash: e.PrevHash}}
		}
		return v.Add(e)
	})
	if err != nil || v == nil {
		return ar, err
	}
	v.Finish()
	ar.events, ar.head = v.Events, v.Head
	if v.BadSeq != 0 {
		ar.problem = fmt.Sprintf("%s: event %d: %s", name, v.BadSeq, v.Problem)
	}
	return ar, nil
}

// walkArchive calls fn with each event of an archive file until it
// returns false; bad lines are errors.
func walkArchive(name string, fn func(*jit.Event) bool) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e jit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("%s:%d: not an activity event: %v", name, line, err)
		}
		if !fn(&e) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// verifyArchives checks that files, in the order of their events, hold
// one chain from the log's first event; anchor, when set, must be in it.
// It returns the chain's head and how many events it holds.
func verifyArchives(files []string, anchor *jit.Anchor) (jit.Anchor, int64, error) {
	var ars []archive
	for _, name := range files {
		ar, err := readArchive(name)
		if err != nil {
			return jit.Anchor{}, 0, err
		}
		if ar.events > 0 {
			ars = append(ars, ar)
		}
	}
	if len(ars) == 0 {
		return jit.Anchor{}, 0, errors.New("the archive files hold no events")
	}
	sort.Slice(ars, func(i, j int) bool { return ars[i].first < ars[j].first })
	v := jit.ChainVerifier{Anchor: anchor}
	for _, ar := range ars {
		err := walkArchive(ar.name, v.Add)
		if err != nil {
			return jit.Anchor{}, 0, err
		}
		if v.BadSeq != 0 {
			return jit.Anchor{}, 0, fmt.Errorf("archive %s: event %d: %s", ar.name, v.BadSeq, v.Problem)
		}
	}
	v.Finish()
	if v.BadSeq != 0 {
		return jit.Anchor{}, 0, fmt.Errorf("archives: event %d: %s", v.BadSeq, v.Problem)
	}
	return v.Head, v.Events, nil
}
