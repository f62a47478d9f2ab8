package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// claimCommands are `ajar role map`, `maps` and `unmap`: roles from an
// OpenID provider's claims.
func (a *app) claimCommands() []*cobra.Command {
	var claim, role, group string
	mapCmd := &cobra.Command{
		Use:   "map --claim NAME=VALUE --role ROLE --group G|*",
		Short: "Give users of the OpenID provider a role while a claim of theirs holds a value",
		Long: `map gives everyone who signs in through the OpenID provider the role in the group while
the claim (a string, or a list such as groups) holds the value. It is evaluated at every sign-in:
when the provider stops sending the value, the role goes at the next sign-in, with the grants it
allowed. Example: ajar role map --claim groups=ops-admins --role jit-admin --group prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, value, ok := strings.Cut(claim, "=")
			if !ok || name == "" || value == "" {
				return fmt.Errorf("--claim must be NAME=VALUE, such as groups=ops-admins; got %q", claim)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			m, err := c.CreateClaimMapping(cmd.Context(), name, value, role, group)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(m)
			}
			fmt.Fprintf(a.stdout, "Users whose %s claim holds %s get the role %s in group %s at their next sign-in (mapping %s).\n", m.Claim, m.Value, m.Role, m.Group, m.ID)
			return nil
		},
	}
	mapCmd.Flags().StringVar(&claim, "claim", "", "NAME=VALUE, such as groups=ops-admins (required)")
	mapCmd.Flags().StringVar(&role, "role", "", "the role (required)")
	mapCmd.Flags().StringVar(&group, "group", "", "the group, or * for every group (required)")
	for _, f := range []string{"claim", "role", "group"} {
		mapCmd.MarkFlagRequired(f)
	}

	maps := &cobra.Command{
		Use:   "maps",
		Short: "List claim mappings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ms, err := c.ListClaimMappings(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(ms))
			}
			t := newTable(a.stdout, "ID", "CLAIM", "VALUE", "ROLE", "GROUP", "CREATED")
			for _, m := range ms {
				t.row(m.ID, m.Claim, m.Value, m.Role, m.Group, fmtTime(m.CreatedAt))
			}
			return t.flush()
		},
	}

	unmap := &cobra.Command{
		Use:   "unmap MAPPING-ID",
		Short: "Remove a claim mapping (its roles go at each user's next sign-in)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteClaimMapping(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Removed claim mapping %s.\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{mapCmd, maps, unmap}
}
