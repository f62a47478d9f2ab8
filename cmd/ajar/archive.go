package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/logarchive"
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
			c, err := a.client()
			if err != nil {
				return err
			}
			arch, err := logarchive.Write(to, func(w io.Writer) error { return c.ExportArchive(ctx, cut, w) })
			if err != nil {
				return fmt.Errorf("--to: nothing was removed from the log: %w", err)
			}
			if arch.Events == 0 {
				fmt.Fprintf(a.stdout, "Nothing to archive: no event before %s is left in the log.\n", cut.UTC().Format(time.RFC3339))
				return nil
			}
			done, err := c.ConfirmArchive(ctx, jit.ArchiveConfirm{From: arch.First, Through: arch.Head, Before: cut})
			if err != nil {
				return fmt.Errorf("%s holds the events, but the server did not remove them: %w", to, err)
			}
			if a.asJSON() {
				return a.printJSON(done)
			}
			fmt.Fprintf(a.stdout, "Archived events %d to %d (%d) to %s.\nThe log now continues %s.\n",
				arch.First, arch.Head.Seq, done.Removed, to, done.ArchivedThrough)
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
