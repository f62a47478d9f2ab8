package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/logarchive"
)

func (a *app) logCommand() *cobra.Command {
	var (
		vmRef, since, until string
		q                   client.EventQuery
		asCSV, asJSONL      bool
		follow              bool
	)
	cmd := &cobra.Command{
		Use:   "log [--vm VM] [--user U] [--op OPERATION] [--since T] [--until T] [--csv|--jsonl|--follow] [--after SEQ] [--limit N]",
		Short: "Read and export the activity log",
		Long: `log prints activity events, oldest first. --since and --until take an RFC 3339 time
(2026-01-02T15:04:05Z) or a duration meaning that long ago (24h, 7d). --csv and
--jsonl export the events in those formats, streamed by the server. Without --limit
every matching event is read (the table and -o json page by page).

--follow prints the matching events after --after (default: from now on) as JSON lines,
then every new one as it is written, until interrupted: pipe it into a SIEM. It
reconnects by itself when the connection drops, resuming after the last event printed;
to resume a later run, pass the last seq printed as --after.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if asCSV && asJSONL {
				return errors.New("give --csv or --jsonl, not both")
			}
			now := time.Now()
			var err error
			if q.Since, err = parseTime("since", since, now); err != nil {
				return err
			}
			if q.Until, err = parseTime("until", until, now); err != nil {
				return err
			}
			if follow {
				if asCSV || asJSONL || q.Limit != 0 || q.Until != (time.Time{}) {
					return errors.New("--follow prints JSON lines with no end: it takes no --csv, --jsonl, --limit or --until")
				}
			}
			if q.Limit < 0 {
				return fmt.Errorf("--limit must not be negative, got %d", q.Limit)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if vmRef != "" {
				vm, err := resolveVM(ctx, c, vmRef)
				if err != nil {
					return err
				}
				q.VM = vm.ID
			}
			switch {
			case follow:
				return a.followLog(ctx, c, q, cmd.Flags().Changed("after"))
			case asCSV:
				return c.ExportEvents(ctx, q, "csv", a.stdout)
			case asJSONL:
				return c.ExportEvents(ctx, q, "jsonl", a.stdout)
			}
			events, err := readEvents(ctx, c, q)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(events))
			}
			printEvents(a, events, vmNames(ctx, c, events))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&vmRef, "vm", "", "only events of this VM")
	f.StringVar(&q.Actor, "user", "", "only events by this user")
	f.StringVar(&q.Operation, "op", "", "only this operation, such as grant.open or request.refuse")
	f.StringVar(&since, "since", "", "only events at or after this time (RFC 3339, or a duration ago such as 24h)")
	f.StringVar(&until, "until", "", "only events before this time (RFC 3339, or a duration ago)")
	f.BoolVar(&asCSV, "csv", false, "export as CSV")
	f.BoolVar(&asJSONL, "jsonl", false, "export as JSON lines")
	f.IntVar(&q.Limit, "limit", 0, "at most this many events (default all)")
	f.BoolVar(&follow, "follow", false, "print new events as JSON lines as they are written, until interrupted")
	f.Int64Var(&q.After, "after", 0, "only events after this sequence number (with --follow: resume after it)")
	cmd.AddCommand(a.logVerifyCommand(), a.logArchiveCommand())
	return cmd
}

// readEvents reads the events q selects, page after page, up to q.Limit
// when it is set.
func readEvents(ctx context.Context, c *client.Client, q client.EventQuery) ([]jit.Event, error) {
	limit := q.Limit
	var all []jit.Event
	for {
		q.Limit = eventPage
		if limit > 0 {
			q.Limit = min(eventPage, limit-len(all))
		}
		page, err := c.ListEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < q.Limit || limit > 0 && len(all) >= limit {
			return all, nil
		}
		q.After = page[len(page)-1].Seq
	}
}

// eventPage is how many events the CLI asks for at a time.
const eventPage = 1000

func printEvents(a *app, events []jit.Event, names map[string]string) {
	t := newTable(a.stdout, "SEQ", "TIME", "ACTOR", "ADDRESS", "VM", "OPERATION", "OUTCOME", "DETAILS")
	for _, e := range events {
		vm := names[e.VMID]
		if vm == "" {
			vm = e.VMID
		}
		t.row(e.Seq, fmtTime(e.Time), e.Actor, e.ActorAddress, vm, e.Operation, e.Outcome, string(e.Details))
	}
	t.flush()
}

func (a *app) logVerifyCommand() *cobra.Command {
	var anchorFlag string
	var archives []string
	cmd := &cobra.Command{
		Use:   "verify [--anchor SEQ:HASH] [--archive FILE...]",
		Short: "Verify the activity log's hash chain (exit status 1 if it was tampered with)",
		Long: "Verify the activity log's hash chain (exit status 1 if it was tampered with).\n" +
			"It prints the log's head (SEQ:HASH): keep it somewhere else and pass it back later with\n" +
			"--anchor to prove that nothing up to it was rewritten or cut off since.\n" +
			"When events were archived (ajar log archive), the log continues the last archived event;\n" +
			"--archive FILE... (the archive files, in any order) also proves the archives, from the\n" +
			"log's first event through them into the log.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && len(archives) == 0 {
				return fmt.Errorf("unexpected argument %q (archive files follow --archive)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			archives = append(archives, args...)
			c, err := a.client()
			if err != nil {
				return err
			}
			var v jit.Verification
			if anchorFlag != "" {
				anchor, perr := jit.ParseAnchor(anchorFlag)
				if perr != nil {
					return fmt.Errorf("--anchor: %v", perr)
				}
				v, err = c.VerifyAnchored(ctx, anchor)
			} else {
				v, err = c.Verify(ctx)
			}
			if err != nil {
				return err
			}
			if v.OK {
				if err := checkArchives(a, v, archives, anchorFlag); err != nil {
					return err
				}
			}
			if a.asJSON() {
				if err := a.printJSON(v); err != nil {
					return err
				}
			}
			if v.OK {
				if !a.asJSON() {
					fmt.Fprintf(a.stdout, "Activity log OK: %d events, hash chain intact.\n", v.Events)
					if v.ArchivedThrough != nil {
						fmt.Fprintf(a.stdout, "It continues the last archived event %s.\n", v.ArchivedThrough)
					}
					if v.Head != nil {
						fmt.Fprintf(a.stdout, "Head: %s\n", v.Head)
					}
				}
				return nil
			}
			if v.FirstBadEvent == nil {
				return fmt.Errorf("activity log verification failed: %s", v.Problem)
			}
			seq := *v.FirstBadEvent
			if !a.asJSON() {
				fmt.Fprintf(a.stdout, "Activity log verification FAILED at event %d: %s\n", seq, v.Problem)
				if evs, err := c.ListEvents(ctx, client.EventQuery{After: seq - 1, Limit: 1}); err == nil && len(evs) == 1 && evs[0].Seq == seq {
					fmt.Fprintln(a.stdout, "First bad event:")
					printEvents(a, evs, vmNames(ctx, c, evs))
				}
			}
			return fmt.Errorf("activity log verification failed at event %d: %s", seq, v.Problem)
		},
	}
	cmd.Flags().StringVar(&anchorFlag, "anchor", "", "an earlier head (SEQ:HASH) that must still be in the log or the archives")
	cmd.Flags().StringArrayVar(&archives, "archive", nil, "archive files written by ajar log archive, to prove too")
	return cmd
}

// checkArchives proves, when archive files are given, that they hold
// the chain from the log's first event up to the checkpoint the log
// continues (and the anchor, when it was archived); without them, an
// archived anchor cannot be checked.
func checkArchives(a *app, v jit.Verification, files []string, anchorFlag string) error {
	if len(files) == 0 {
		if v.AnchorArchived {
			return fmt.Errorf("the anchor %s was archived: give the archive files with --archive to check it", anchorFlag)
		}
		return nil
	}
	if v.ArchivedThrough == nil {
		return errors.New("--archive: nothing was archived out of this log; its chain starts at its first event")
	}
	var anchor *jit.Anchor
	if v.AnchorArchived {
		an, _ := jit.ParseAnchor(anchorFlag)
		anchor = &an
	}
	head, n, err := logarchive.Verify(files, anchor)
	if err != nil {
		return fmt.Errorf("archive verification failed: %w", err)
	}
	if head != *v.ArchivedThrough {
		return fmt.Errorf("archive verification failed: the archives end at %s, but the log continues %s", head, v.ArchivedThrough)
	}
	if !a.asJSON() {
		fmt.Fprintf(a.stdout, "Archives OK: %d events, 1 to %d, hash chain intact.\n", n, head.Seq)
	}
	return nil
}

// followLog prints new events as JSON lines until interrupted. Without
// --after (or --since) it starts now.
func (a *app) followLog(ctx context.Context, c *client.Client, q client.EventQuery, after bool) error {
	if !after && q.Since.IsZero() {
		q.Since = time.Now()
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	return c.FollowEvents(ctx, q, func(e jit.Event) error { return enc.Encode(e) }, func(err error) {
		fmt.Fprintf(a.stderr, "ajar: log --follow: %v; reconnecting\n", err)
	})
}
