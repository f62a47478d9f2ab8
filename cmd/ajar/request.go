package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) requestCommand() *cobra.Command {
	var (
		ports            []string
		dur, source, why string
		wait             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "request VM... [--port 22]... [--for 1h] [--source my-ip|CIDR] [--reason TEXT] [--wait 10m]",
		Short: "Request access: open ports of VMs for your address, for a while",
		Long: `request asks the server to open ports of one or more VMs under their JIT policies
and prints the grants it opened. With no --port it asks for every port of each VM's
policy. --for defaults to each port's maximum; --source to your own address (my-ip).
When a VM's policy requires approval the request waits, pending, for approvers
(ajar approve); --wait waits for their decision, then for the ports, as ajar ssh
does. The duration counts from the approval.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			req := jit.AccessRequest{Justification: why}
			hosts := map[string]string{} // VM id -> the address --wait dials
			for _, ref := range args {
				vm, err := resolveVM(ctx, c, ref)
				if err != nil {
					return err
				}
				pr, err := portRequests(ctx, c, vm, ports, dur, source)
				if err != nil {
					return err
				}
				req.VirtualMachines = append(req.VirtualMachines, jit.VMRequest{ID: vm.ID, Ports: pr})
				if len(vm.Addresses) > 0 {
					hosts[vm.ID], _, _ = strings.Cut(vm.Addresses[0], "/")
				}
			}
			got, err := c.RequestAccess(ctx, req)
			if err != nil {
				return err
			}
			if got.Status == jit.RequestPending {
				if wait <= 0 {
					return a.printRequest(got)
				}
				fmt.Fprintf(a.stderr, "Request %s waits for approval (%s); waiting up to %s.\n", got.ID, approvals(got), wait)
				if got, err = waitDecision(ctx, c, got, wait); err != nil {
					return err
				}
			}
			if a.asJSON() {
				return a.printJSON(got)
			}
			printGrants(a, got.Grants, false)
			if wait > 0 {
				for _, g := range got.Grants {
					if h := hosts[g.VMID]; h != "" && g.Protocol != jit.ProtoUDP {
						if err := waitOpen(ctx, net.JoinHostPort(h, strconv.Itoa(g.Port)), wait); err != nil {
							return err
						}
					}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&ports, "port", nil, "a port to open, such as 22 or 53/udp (repeatable; default: every port of the policy)")
	f.StringVar(&dur, "for", "", "how long, such as 1h, 30m or PT1H (default: the port's maximum)")
	f.StringVar(&source, "source", "my-ip", "the source to let in: my-ip (the address the server sees) or an address or CIDR")
	f.StringVar(&why, "reason", "", "the justification, logged with the request")
	f.DurationVar(&wait, "wait", 0, "wait this long for the approvals a policy requires, then for each TCP port to accept connections")
	return cmd
}

// portRequests builds the ports asked for on vm: the given port specs, or
// every rule of its policy when there are none.
func portRequests(ctx context.Context, c *client.Client, vm jit.VMView, ports []string, dur, source string) ([]jit.PortRequest, error) {
	iso, err := isoDuration("for", dur)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(source, "my-ip") {
		source = ""
	}
	var out []jit.PortRequest
	add := func(n int, proto string) {
		out = append(out, jit.PortRequest{Number: n, Protocol: proto, AllowedSourceAddressPrefix: source, Duration: iso})
	}
	for _, s := range ports {
		n, proto, err := parsePort(s)
		if err != nil {
			return nil, err
		}
		add(n, proto)
	}
	if len(ports) == 0 {
		pol := vm.Policy
		if pol == nil {
			p, err := c.GetPolicy(ctx, vm.ID)
			if err != nil {
				return nil, err
			}
			pol = &p
		}
		for _, r := range pol.Ports {
			add(r.Number, r.Protocol)
		}
	}
	return out, nil
}
