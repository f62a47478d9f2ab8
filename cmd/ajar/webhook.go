package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// webhookCommand is `ajar webhook add|ls|rm|deliveries` (admins only).
func (a *app) webhookCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Send activity events to Slack, Teams or any HTTPS endpoint (admins)",
		Long: `Webhooks are told of activity events of the kinds and groups they subscribe to, signed with
their secret, at least once (deduplicate on the Ajar-Event-Id header). Kinds:
  ` + strings.Join(jit.NotificationKinds, ", "),
	}
	var events, groups []string
	var format, secretFile string
	add := &cobra.Command{
		Use:   "add URL [--events KIND,...] [--group G]... [--format plain|slack|teams] [--secret-file F]",
		Short: "Add a webhook; its secret is printed once",
		Example: `  ajar webhook add https://hooks.slack.com/services/T/B/X --format slack --events request.pending --group prod
  ajar webhook add https://siem.example.com/ajar --secret-file /run/secrets/ajar-hook`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := jit.NewWebhook{URL: args[0], Format: format, Events: events, Groups: groups}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("--secret-file: %w", err)
				}
				in.Secret = strings.TrimRight(string(b), "\r\n")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			w, err := c.CreateWebhook(cmd.Context(), in)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(w)
			}
			fmt.Fprintf(a.stdout, "Added webhook %s (%s) for %s in %s.\n", w.ID, w.Format, strings.Join(w.Events, ", "), groupsText(w.Groups))
			if secretFile == "" {
				fmt.Fprintf(a.stdout, "\nIts signing secret (shown once, keep it safe):\n\n    %s\n\n", w.Secret)
			}
			return nil
		},
	}
	add.Flags().StringSliceVar(&events, "events", nil, "kinds of events to send, comma-separated (default every kind)")
	add.Flags().StringArrayVar(&groups, "group", nil, "send only events of this group (repeat for several; default every group)")
	add.Flags().StringVar(&format, "format", "plain", "plain (the event as JSON), slack or teams")
	add.Flags().StringVar(&secretFile, "secret-file", "", "read the signing secret from this file instead of generating one")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List webhooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ws, err := c.ListWebhooks(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(ws))
			}
			t := newTable(a.stdout, "ID", "FORMAT", "URL", "EVENTS", "GROUPS", "CREATED")
			for _, w := range ws {
				t.row(w.ID, w.Format, w.URL, strings.Join(w.Events, ","), groupsText(w.Groups), fmtTime(w.CreatedAt))
			}
			return t.flush()
		},
	}

	rm := &cobra.Command{
		Use:   "rm WEBHOOK-ID",
		Short: "Remove a webhook (its deliveries not yet made are dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteWebhook(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Removed webhook %s.\n", args[0])
			return nil
		},
	}

	var limit int
	var cursor string
	deliveries := &cobra.Command{
		Use:   "deliveries WEBHOOK-ID [--limit N] [--cursor C]",
		Short: "Show a webhook's deliveries, newest event first: status, attempts, last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ds, next, err := c.ListDeliveries(cmd.Context(), args[0], limit, cursor)
			if err != nil {
				return err
			}
			if a.asJSON() {
				out := map[string]any{"value": ds}
				if next != "" {
					out["next"] = next
				}
				return a.printJSON(out)
			}
			t := newTable(a.stdout, "SEQ", "KIND", "STATUS", "ATTEMPTS", "LAST ERROR", "NEXT ATTEMPT", "DELIVERED")
			for _, d := range ds {
				nextAttempt := ""
				if d.Status == jit.DeliveryPending {
					nextAttempt = fmtTime(d.NextAttempt)
				}
				t.row(fmt.Sprint(d.Seq), d.Kind, d.Status, fmt.Sprint(d.Attempts), d.LastError, nextAttempt, fmtTimePtr(d.DeliveredAt))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(a.stderr, "More: --cursor %s\n", next)
			}
			return nil
		},
	}
	deliveries.Flags().IntVar(&limit, "limit", 0, "at most this many (default 100)")
	deliveries.Flags().StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")

	cmd.AddCommand(add, ls, rm, deliveries)
	return cmd
}

func groupsText(gs []string) string {
	if len(gs) == 0 {
		return "every group"
	}
	return strings.Join(gs, ",")
}
