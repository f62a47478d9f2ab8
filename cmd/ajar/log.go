package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) logCommand() *cobra.Command {
	var (
		vmRef, since, until string
		q                   client.EventQuery
		asCSV, asJSONL      bool
	)
	cmd := &cobra.Command{
		Use:   "log [--vm VM] [--user U] [--op OPERATION] [--since T] [--until T] [--csv|--jsonl] [--limit N]",
		Short: "Read and export the activity log",
		Long: `log prints activity events, oldest first. --since and --until take an RFC 3339 time
(2026-01-02T15:04:05Z) or a duration meaning that long ago (24h, 7d). --csv and
--jsonl export the events in those formats, streamed by the server. Without --limit
every matching event is read (the table and -o json page by page).`,
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
	cmd.AddCommand(a.logVerifyCommand())
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
	cmd := &cobra.Command{
		Use:   "verify [--anchor SEQ:HASH]",
		Short: "Verify the activity log's hash chain (exit status 1 if it was tampered with)",
		Long: "Verify the activity log's hash chain (exit status 1 if it was tampered with).\n" +
			"It prints the log's head (SEQ:HASH): keep it somewhere else and pass it back later with\n" +
			"--anchor to prove that nothing up to it was rewritten or cut off since.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
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
			if a.asJSON() {
				if err := a.printJSON(v); err != nil {
					return err
				}
			}
			if v.OK {
				if !a.asJSON() {
					fmt.Fprintf(a.stdout, "Activity log OK: %d events, hash chain intact.\n", v.Events)
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
	cmd.Flags().StringVar(&anchorFlag, "anchor", "", "an earlier head (SEQ:HASH) that must still be in the log")
	return cmd
}
