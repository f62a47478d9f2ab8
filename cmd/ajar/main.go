// Command ajar is the command-line client of ajar, the just-in-time VM
// access system: sign in, list VMs, enable and disable JIT on them, request
// access (or just `ajar ssh VM`), list and revoke grants, read, export and
// verify the activity log, and administer users, tokens and roles.
//
// Tables are printed for people; `-o json` prints the API's JSON for
// scripts. Errors are printed to stderr as `ajar: <message> (<target>)`
// and the exit status is non-zero.
//
// The server and token come from --server/--token, then AJAR_SERVER and
// AJAR_TOKEN, then the file `ajar login` writes
// ($XDG_CONFIG_HOME/ajar/config.json or the user's config folder).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/buildinfo"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		os.Exit(1)
	}
}

// run runs the ajar command line args. It prints errors to stderr itself
// and returns them so that main can set the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return newApp(getenv, stdin, stdout, stderr).run(ctx, args)
}

// app holds what every command needs: the process's environment and
// streams, and the global flags.
type app struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// exec replaces the process (syscall.Exec); lookPath finds a program.
	// Tests replace both.
	exec     func(argv0 string, argv, env []string) error
	lookPath func(string) (string, error)
	environ  func() []string

	output      string // table or json
	server      string
	token       string
	fingerprint string
	configPath  string
}

func newApp(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{
		getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr,
		exec: syscall.Exec, lookPath: exec.LookPath, environ: os.Environ,
	}
}

func (a *app) run(ctx context.Context, args []string) error {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(a.stderr, "ajar: %s\n", errorText(err))
	}
	return err
}

// errorText is how an error is shown to the user: the server's message and
// target for an API error, the error itself otherwise.
func errorText(err error) string {
	var e *jit.Error
	if errors.As(err, &e) {
		if e.Target != "" {
			return fmt.Sprintf("%s (%s)", e.Message, e.Target)
		}
		return e.Message
	}
	return err.Error()
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ajar",
		Short: "Just-in-time access to VMs",
		Long: `ajar opens management ports (SSH, RDP, WinRM, ...) of a VM for your address only,
for a bounded time, under the VM's JIT policy. Start with "ajar login".

VMs are named by name, by group/name when the name is used in several groups, or by id.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("-o must be table or json, got %q", a.output)
			}
			return nil
		},
	}
	root.Version = buildinfo.Read().String("ajar")
	root.SetVersionTemplate("{{.Version}}\n")
	f := root.PersistentFlags()
	f.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	f.StringVar(&a.server, "server", "", "server URL (default $AJAR_SERVER or the saved login)")
	f.StringVar(&a.token, "token", "", "API token (default $AJAR_TOKEN or the saved login)")
	f.StringVar(&a.fingerprint, "ca-fingerprint", "", `pin the server's TLS certificate ("sha256:HEX")`)
	f.StringVar(&a.configPath, "config", "", "config file (default $XDG_CONFIG_HOME/ajar/config.json)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %q)", err, cmd.CommandPath()+" --help")
	})

	root.AddCommand(
		a.loginCommand(), a.logoutCommand(), a.whoamiCommand(),
		a.groupCommand(), a.vmCommand(), a.jitCommand(),
		a.requestCommand(), a.requestsCommand(), a.approveCommand(), a.denyCommand(),
		a.grantCommand(), hidden(a.revokeCommand()),
		a.logCommand(),
		a.userCommand(), a.tokenCommand(), a.roleCommand(), a.webhookCommand(),
		a.sshCommand(),
		a.azureCommand(),
		a.awsCommand(),
		a.gcpCommand(),
		a.versionCommand(),
	)
	for _, extra := range extraCommands {
		root.AddCommand(extra(root))
	}
	return root
}

// extraCommands are commands added by build tags (manpages.go).
var extraCommands []func(root *cobra.Command) *cobra.Command

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the commit ajar was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(a.stdout, buildinfo.Read().String("ajar"))
			return err
		},
	}
}

// settings returns the server, token and fingerprint to use: flags first,
// then the environment, then the config file.
func (a *app) settings() (config, error) {
	c, err := a.loadConfig()
	if err != nil {
		return c, err
	}
	pick := func(dst *string, flag, env string) {
		if flag != "" {
			*dst = flag
		} else if v := a.getenv(env); v != "" {
			*dst = v
		}
	}
	pick(&c.Server, a.server, "AJAR_SERVER")
	pick(&c.Token, a.token, "AJAR_TOKEN")
	pick(&c.Fingerprint, a.fingerprint, "AJAR_CA_FINGERPRINT")
	return c, nil
}

// client returns an API client for the current settings.
func (a *app) client() (*client.Client, error) {
	c, err := a.settings()
	if err != nil {
		return nil, err
	}
	if c.Server == "" {
		return nil, errors.New(`no server: run "ajar login --server URL --token T", or set AJAR_SERVER and AJAR_TOKEN`)
	}
	if c.Token == "" {
		return nil, errors.New(`no token: run "ajar login", or set AJAR_TOKEN`)
	}
	return newClient(c)
}

func newClient(c config) (*client.Client, error) {
	return client.New(c.Server, c.Token, client.Options{
		Fingerprint: c.Fingerprint,
		RequireTLS:  true,
		Timeout:     2 * time.Minute,
	})
}
