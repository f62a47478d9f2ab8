package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// readPassword reads one line from stdin, without its line ending.
func (a *app) readPassword() (string, error) {
	return readLine(bufio.NewReader(a.stdin), "password")
}

// readLine reads one line holding what from r.
func readLine(r *bufio.Reader, what string) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the %s from stdin: %w", what, err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", fmt.Errorf("no %s on stdin", what)
	}
	return pw, nil
}

func (a *app) userCommand() *cobra.Command {
	cmd := parent("user", "Manage users (admins)")
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			us, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(us))
			}
			t := newTable(a.stdout, "NAME", "PASSWORD", "CREATED")
			for _, u := range us {
				t.row(u.Name, yesNo(u.HasPassword), fmtTime(u.CreatedAt))
			}
			return t.flush()
		},
	})

	var pwStdin bool
	add := &cobra.Command{
		Use:   "add NAME [--password-stdin]",
		Short: "Create a user; with --password-stdin, with a console password read from stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := jit.NewUser{Name: args[0]}
			if pwStdin {
				var err error
				if n.Password, err = a.readPassword(); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), n)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(u)
			}
			fmt.Fprintf(a.stdout, "Created user %s.\n", u.Name)
			return nil
		},
	}
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read a console password from stdin")
	cmd.AddCommand(add)

	cmd.AddCommand(&cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Deleted user %s.\n", args[0])
			return nil
		},
	})

	var pwStdin2, curStdin bool
	passwd := &cobra.Command{
		Use:   "passwd NAME --password-stdin",
		Short: "Set a user's console password, read from stdin; the user's other console sessions end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !pwStdin2 {
				return errors.New("give the password on stdin with --password-stdin")
			}
			in := bufio.NewReader(a.stdin)
			current := ""
			if curStdin {
				var err error
				if current, err = readLine(in, "current password"); err != nil {
					return err
				}
			}
			pw, err := readLine(in, "password")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			set, err := c.SetPassword(cmd.Context(), args[0], current, pw)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(set)
			}
			fmt.Fprintf(a.stdout, "Password of %s set; %d other console sessions ended.\n", args[0], set.SessionsEnded)
			return nil
		},
	}
	passwd.Flags().BoolVar(&pwStdin2, "password-stdin", false, "read the password from stdin (required)")
	passwd.Flags().BoolVar(&curStdin, "current-password-stdin", false, "read your current password from stdin first, on its own line (needed to change your own password)")
	cmd.AddCommand(passwd)
	return cmd
}

func (a *app) tokenCommand() *cobra.Command {
	cmd := parent("token", "Manage API tokens (admins)")

	var lsUser string
	ls := &cobra.Command{
		Use:   "ls [--user U]",
		Short: "List tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context(), lsUser)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(ts))
			}
			t := newTable(a.stdout, "ID", "KIND", "USER", "NAME", "GROUP/VM", "CREATED", "EXPIRES")
			for _, tk := range ts {
				t.row(tk.ID, tk.Kind, tk.User, tk.Name, first(tk.Group, tk.VMID), fmtTime(tk.CreatedAt), fmtTimePtr(tk.ExpiresAt))
			}
			return t.flush()
		},
	}
	ls.Flags().StringVar(&lsUser, "user", "", "only tokens of this user")

	var n jit.NewToken
	var ttl string
	create := &cobra.Command{
		Use:   "create --user U [--name N] [--ttl 720h]",
		Short: "Create an API token for a user; its secret is shown once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if n.TTL, err = isoDuration("ttl", ttl); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			tk, err := c.CreateToken(cmd.Context(), n)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(tk)
			}
			exp := "never expires"
			if tk.ExpiresAt != nil {
				exp = "expires " + fmtTime(*tk.ExpiresAt)
			}
			fmt.Fprintf(a.stdout, "Token %s for %s (%s). Its secret, shown once:\n%s\n", tk.ID, tk.User, exp, tk.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&n.User, "user", "", "the user the token acts as (required)")
	create.Flags().StringVar(&n.Name, "name", "", "a name to recognize the token by")
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token is valid, such as 720h (default: no expiry)")
	create.MarkFlagRequired("user")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(map[string]string{"revoked": args[0]})
			}
			fmt.Fprintf(a.stdout, "Revoked token %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(ls, create, revoke)
	return cmd
}

func (a *app) roleCommand() *cobra.Command {
	cmd := parent("role", "Manage role bindings (admins)")
	cmd.Long = "Roles: admin, jit-admin, requester, requester-any-source, reader, approver; each bound to a user in a group, or in every group (*)."

	var lsUser string
	ls := &cobra.Command{
		Use:   "ls [--user U]",
		Short: "List role bindings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			bs, err := c.ListRoleBindings(cmd.Context(), lsUser)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(bs))
			}
			t := newTable(a.stdout, "ID", "USER", "ROLE", "GROUP", "CREATED")
			for _, b := range bs {
				t.row(b.ID, b.User, b.Role, b.Group, fmtTime(b.CreatedAt))
			}
			return t.flush()
		},
	}
	ls.Flags().StringVar(&lsUser, "user", "", "only bindings of this user")

	var group string
	grant := &cobra.Command{
		Use:   "grant USER ROLE --group G|*",
		Short: "Give a user a role in a group, or in every group (--group '*')",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			b, err := c.CreateRoleBinding(cmd.Context(), args[0], args[1], group)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(b)
			}
			fmt.Fprintf(a.stdout, "Granted %s the role %s in group %s (binding %s).\n", b.User, b.Role, b.Group, b.ID)
			return nil
		},
	}
	grant.Flags().StringVar(&group, "group", "", "the group, or * for every group (required)")
	grant.MarkFlagRequired("group")

	revoke := &cobra.Command{
		Use:   "revoke BINDING-ID",
		Short: "Remove a role binding",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteRoleBinding(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Removed role binding %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(ls, grant, revoke)
	cmd.AddCommand(a.claimCommands()...)
	return cmd
}
