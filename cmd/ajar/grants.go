package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// grantCommand is "ajar grant ls|revoke" (also spelled "grants").
func (a *app) grantCommand() *cobra.Command {
	cmd := parent("grant", "List and revoke grants (opened ports)")
	cmd.Aliases = []string{"grants"}
	var vmRef, status, user string
	ls := &cobra.Command{
		Use:   "ls [--vm VM] [--status active|expired|revoked|superseded] [--user U]",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			vmID := ""
			if vmRef != "" {
				vm, err := resolveVM(ctx, c, vmRef)
				if err != nil {
					return err
				}
				vmID = vm.ID
			}
			gs, err := c.ListGrants(ctx, vmID, status, user)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(gs))
			}
			printGrants(a, gs, true)
			return nil
		},
	}
	ls.Flags().StringVar(&vmRef, "vm", "", "only grants on this VM")
	ls.Flags().StringVar(&status, "status", "", "only grants in this state: active, expired, revoked or superseded")
	ls.Flags().StringVar(&user, "user", "", "only grants of this user")
	cmd.AddCommand(ls, a.revokeCommand())
	return cmd
}

// printGrants prints grants as a table; all adds who, state and start.
func printGrants(a *app, gs []jit.Grant, all bool) {
	var t *table
	if all {
		t = newTable(a.stdout, "ID", "VM", "PORT", "PROTOCOL", "SOURCE", "USER", "STATUS", "START", "END")
	} else {
		t = newTable(a.stdout, "GRANT", "VM", "PORT", "PROTOCOL", "SOURCE", "UNTIL")
	}
	for _, g := range gs {
		vm := g.Group + "/" + g.VMName
		if all {
			end := g.EndTime
			if g.EndedAt != nil {
				end = *g.EndedAt
			}
			t.row(g.ID, vm, g.Port, g.Protocol, g.Source, g.User, g.Status, fmtTime(g.StartTime), fmtTime(end))
		} else {
			t.row(g.ID, vm, g.Port, g.Protocol, g.Source, fmtTime(g.EndTime))
		}
	}
	t.flush()
}

// revokeCommand ends a grant: "ajar grant revoke ID", and the older
// spelling "ajar revoke ID", kept hidden.
func (a *app) revokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke GRANT-ID",
		Short: "End a grant now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.Revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(g)
			}
			what := fmt.Sprintf("%s/%s port %d/%s from %s", g.Group, g.VMName, g.Port, g.Protocol, g.Source)
			if g.Status == jit.GrantRevoked {
				fmt.Fprintf(a.stdout, "Revoked grant %s (%s): %s.\n", g.ID, what, jit.EndedState(g))
			} else {
				// Revoking an ended grant changes nothing and is no failure.
				fmt.Fprintf(a.stdout, "Grant %s (%s) had already ended: %s.\n", g.ID, what, jit.EndedState(g))
			}
			return nil
		},
	}
}
