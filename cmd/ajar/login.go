package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
)

func (a *app) loginCommand() *cobra.Command {
	var tokenStdin, sso, device bool
	cmd := &cobra.Command{
		Use:   "login --server URL (--token T | --sso [--device]) [--ca-fingerprint sha256:HEX]",
		Short: "Check a token and save it with the server's address",
		Long: `login checks the token against the server (whoami) and saves the server, the token
and the certificate fingerprint to the config file, readable by you only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The token is the one given now; the server may come from the
			// saved login, and its pinned fingerprint with it.
			saved, err := a.loadConfig()
			if err != nil {
				return err
			}
			c := config{
				Server:      first(a.server, a.getenv("AJAR_SERVER"), saved.Server),
				Token:       first(a.token, a.getenv("AJAR_TOKEN")),
				Fingerprint: first(a.fingerprint, a.getenv("AJAR_CA_FINGERPRINT")),
			}
			if c.Fingerprint == "" && c.Server == saved.Server {
				c.Fingerprint = saved.Fingerprint
			}
			if sso {
				if c.Server == "" {
					return errors.New("login --sso needs --server URL")
				}
				login := a.ssoLogin
				if device {
					login = a.ssoDeviceLogin
				}
				if c, err = login(cmd.Context(), c); err != nil {
					return err
				}
			}
			if tokenStdin {
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read the token from stdin: %w", err)
				}
				c.Token = strings.TrimSpace(line)
			}
			if c.Server == "" || c.Token == "" {
				return errors.New("login needs --server URL and --token T (or --token-stdin)")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			who, err := cl.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			path, err := a.saveConfig(c)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(who)
			}
			fmt.Fprintf(a.stdout, "Logged in to %s as %s (config %s).\n", c.Server, who.User, path)
			return nil
		},
	}
	cmd.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from stdin instead of --token")
	cmd.Flags().BoolVar(&sso, "sso", false, "sign in through the server's OpenID provider in a browser, for an API token of 12 hours")
	cmd.Flags().BoolVar(&device, "device", false, "with --sso: sign in on another device (a phone, a laptop) with a code, where no browser here can come back to the CLI")
	return cmd
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the saved server and token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := a.configFile()
			if err != nil {
				return err
			}
			err = os.Remove(path)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintln(a.stdout, "Not logged in.")
				return nil
			}
			if err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			fmt.Fprintln(a.stdout, "Logged out.")
			return nil
		},
	}
}

func (a *app) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the token stands for, your address and your roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			who, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(who)
			}
			printWhoami(a, c, who)
			return nil
		},
	}
}

func printWhoami(a *app, c *client.Client, who client.Whoami) {
	fmt.Fprintf(a.stdout, "User:    %s\nKind:    %s\nAddress: %s\nServer:  %s\n", who.User, who.Kind, who.Address, c.BaseURL)
	if len(who.Bindings) == 0 {
		fmt.Fprintln(a.stdout, "Roles:   none")
		return
	}
	fmt.Fprintln(a.stdout, "Roles:")
	t := newTable(a.stdout, "  ROLE", "GROUP")
	for _, b := range who.Bindings {
		t.row("  "+b.Role, b.Group)
	}
	t.flush()
}

// first returns the first non-empty string.
func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
