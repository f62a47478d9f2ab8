package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) sshCommand() *cobra.Command {
	var (
		dur, user, why string
		port           int
		wait           time.Duration
		approvalWait   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ssh VM [-- ssh args]",
		Short: "Open port 22 of a VM for your address, wait until it answers, and run ssh",
		Long: `ssh requests the VM's SSH port for your own address (for the port's maximum, or
--for), waits until the port accepts a TCP connection on the VM's first address,
then runs ssh there. Arguments after -- go to ssh, after the address.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash > 1 || (dash < 0 && len(args) > 1) {
				return errors.New("name one VM; put arguments for ssh after --, as in: ajar ssh VM -- -A")
			}
			ctx := cmd.Context()
			sshPath, err := a.lookPath("ssh")
			if err != nil {
				return fmt.Errorf("ssh: %w", err)
			}
			return a.onVM(ctx, args[0], func(c *client.Client, vm jit.VMView) error {
				if len(vm.Addresses) == 0 {
					return fmt.Errorf("VM %s/%s has no address to connect to", vm.Group, vm.Name)
				}
				host, _, _ := strings.Cut(vm.Addresses[0], "/")
				ports, err := portRequests(ctx, c, vm, []string{strconv.Itoa(port)}, dur, "my-ip")
				if err != nil {
					return err
				}
				req, err := c.RequestAccess(ctx, jit.AccessRequest{
					VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: ports}},
					Justification:   why,
				})
				if err != nil {
					return err
				}
				if req.Status == jit.RequestPending {
					fmt.Fprintf(a.stderr, "Request %s waits for approval (%s); waiting up to %s.\n", req.ID, approvals(req), approvalWait)
					if req, err = waitDecision(ctx, c, req, approvalWait); err != nil {
						return err
					}
				}
				for _, g := range req.Grants {
					fmt.Fprintf(a.stderr, "Port %d/%s of %s/%s is open for %s until %s.\n", g.Port, g.Protocol, g.Group, g.VMName, g.Source, fmtTime(g.EndTime))
				}
				addr := net.JoinHostPort(host, strconv.Itoa(port))
				if err := waitOpen(ctx, addr, wait); err != nil {
					return err
				}
				argv := []string{"ssh"}
				if user != "" {
					argv = append(argv, "-l", user)
				}
				if port != 22 {
					argv = append(argv, "-p", strconv.Itoa(port))
				}
				argv = append(argv, host)
				argv = append(argv, args[1:]...)
				return a.exec(sshPath, argv, a.environ())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dur, "for", "", "how long to keep the port open, such as 1h (default: the port's maximum)")
	f.StringVarP(&user, "user", "l", "", "the user to log in as on the VM")
	f.StringVar(&why, "reason", "", "the justification, logged with the request")
	f.IntVar(&port, "port", 22, "the VM's SSH port")
	f.DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the port to accept connections")
	f.DurationVar(&approvalWait, "approval-wait", 10*time.Minute, "how long to wait for approvers when the VM's policy requires approval")
	return cmd
}

// waitOpen waits until addr accepts a TCP connection, for at most wait.
func waitOpen(ctx context.Context, addr string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var d net.Dialer
	for {
		attempt, stop := context.WithTimeout(ctx, 2*time.Second)
		conn, err := d.DialContext(attempt, "tcp", addr)
		stop()
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not accept a connection within %s (last error: %v)", addr, wait, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
