package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) requestsCommand() *cobra.Command {
	cmd := parent("requests", "List, show and cancel access requests")
	var pending bool
	var user string
	ls := &cobra.Command{
		Use:   "ls [--pending] [--user U]",
		Short: "List requests; --pending: those waiting for a decision you may make",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			var rs []jit.Request
			if pending {
				if user != "" {
					return fmt.Errorf("--user does not combine with --pending")
				}
				rs, err = c.ListPending(ctx)
			} else {
				rs, err = c.ListRequests(ctx, user)
			}
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(rs))
			}
			t := newTable(a.stdout, "ID", "USER", "STATUS", "GROUP", "APPROVALS", "CREATED", "WAITS UNTIL", "JUSTIFICATION")
			for _, r := range rs {
				t.row(r.ID, r.User, r.Status, r.Group, approvals(r), fmtTime(r.CreatedAt), optTime(r.ExpiresAt), r.Justification)
			}
			return t.flush()
		},
	}
	ls.Flags().BoolVar(&pending, "pending", false, "only pending requests you may approve or deny")
	ls.Flags().StringVar(&user, "user", "", "only requests of this user")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a request: its state, decisions and grants",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.GetRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printRequest(r)
		},
	}
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw your own pending request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.CancelRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printRequest(r)
		},
	}
	cmd.AddCommand(ls, show, cancel)
	return cmd
}

func (a *app) approveCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "approve ID [--reason TEXT]",
		Short: "Approve a pending request (role approver in its group; not your own)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Approve(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return a.printRequest(r)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, logged with the approval")
	return cmd
}

func (a *app) denyCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "deny ID --reason TEXT",
		Short: "Deny a pending request, with the reason its requester sees",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason is required to deny")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Deny(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return a.printRequest(r)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	return cmd
}

// printRequest prints a request's state, decisions and grants.
func (a *app) printRequest(r jit.Request) error {
	if a.asJSON() {
		return a.printJSON(r)
	}
	fmt.Fprintf(a.stdout, "Request %s by %s: %s", r.ID, r.User, r.Status)
	if r.Status == jit.RequestPending {
		fmt.Fprintf(a.stdout, " (%s approvals, waits until %s)", approvals(r), optTime(r.ExpiresAt))
	}
	fmt.Fprintln(a.stdout)
	for _, d := range r.Decisions {
		verdict := "denied"
		if d.Approve {
			verdict = "approved"
		}
		fmt.Fprintf(a.stdout, "  %s %s at %s: %s\n", cell(d.User), verdict, fmtTime(d.Time), cell(d.Reason))
	}
	if len(r.Grants) > 0 {
		printGrants(a, r.Grants, false)
	}
	return nil
}

func approvals(r jit.Request) string {
	if r.Required == 0 {
		return ""
	}
	n := 0
	for _, d := range r.Decisions {
		if d.Approve {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, r.Required)
}

func optTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

// waitDecision polls a pending request until it is decided or wait has
// passed; it returns the request once approved, else an error saying what
// became of it.
func waitDecision(ctx context.Context, c *client.Client, r jit.Request, wait time.Duration) (jit.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for r.Status == jit.RequestPending {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("request %s is still pending after %s (%s approvals); see it with: ajar requests show %s", r.ID, wait, approvals(r), r.ID)
		case <-time.After(2 * time.Second):
		}
		got, err := c.GetRequest(ctx, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return r, err
		}
		r = got
	}
	if r.Status != jit.RequestApproved {
		why := ""
		for _, d := range r.Decisions {
			if !d.Approve {
				why = fmt.Sprintf(" by %s: %s", d.User, d.Reason)
			}
		}
		return r, fmt.Errorf("request %s was %s%s", r.ID, r.Status, why)
	}
	return r, nil
}
