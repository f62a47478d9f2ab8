package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) jitCommand() *cobra.Command {
	cmd := parent("jit", "Enable, disable and show JIT policies")
	cmd.AddCommand(a.jitEnableCommand(), a.jitDisableCommand(), a.jitShowCommand())
	return cmd
}

func (a *app) jitEnableCommand() *cobra.Command {
	var (
		ports, sources []string
		max            string
		p              jit.Policy
		approvers      int
		pendingLife    string
		auto           jit.AutoApproval
		autoMax        string
	)
	cmd := &cobra.Command{
		Use:   "enable VM [--port 22/tcp|22/udp|22/*|22]... [--max 3h] [--source CIDR]... [--require-justification] [--close-connections] [--approvers N [--pending-lifetime 24h] [--auto-approve-max 1h] [--auto-approve-hours 08-18] [--auto-approve-group G]...]",
		Short: "Enable JIT on a VM: lock its management ports, open them on request",
		Long: `enable sets the VM's JIT policy, replacing any policy it had. With no --port it
uses the server's recommendation for the VM (the management ports it listens on, or
those of its OS). A port without a protocol means both TCP and UDP (*). --max and
--source apply to every port; by default requests may last up to 3 hours, from any
source. With --approvers, the --auto-approve-* conditions approve at once the requests
that meet all of them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			maxISO, err := isoDuration("max", max)
			if err != nil {
				return err
			}
			if approvers > 0 {
				life, err := isoDuration("pending-lifetime", pendingLife)
				if err != nil {
					return err
				}
				p.Approval = &jit.Approval{Required: approvers, PendingLifetime: life}
				if auto.MaxDuration, err = isoDuration("auto-approve-max", autoMax); err != nil {
					return err
				}
				if auto.MaxDuration != "" || auto.Hours != "" || len(auto.RequesterGroups) > 0 {
					p.Approval.AutoApprove = &auto
				}
			} else if pendingLife != "" || autoMax != "" || auto.Hours != "" || len(auto.RequesterGroups) > 0 {
				return fmt.Errorf("--pending-lifetime and --auto-approve-* need --approvers")
			}
			for _, s := range ports {
				n, proto, err := parsePort(s)
				if err != nil {
					return err
				}
				if proto == "" {
					proto = jit.ProtoAny
				}
				p.Ports = append(p.Ports, jit.PortRule{Number: n, Protocol: proto})
			}
			ctx := cmd.Context()
			return a.onVM(ctx, args[0], func(c *client.Client, vm jit.VMView) error {
				if len(p.Ports) == 0 {
					rec, err := c.Recommend(ctx, vm.ID)
					if err != nil {
						return err
					}
					if len(rec.Ports) == 0 {
						return fmt.Errorf("the server recommends no ports for VM %s/%s: name them with --port", vm.Group, vm.Name)
					}
					p.Ports = rec.Ports
				}
				for i := range p.Ports {
					if maxISO != "" {
						p.Ports[i].MaxRequestAccessDuration = maxISO
					}
					if len(sources) > 0 {
						p.Ports[i].AllowedSourceAddressPrefixes = sources
					}
				}
				got, err := c.PutPolicy(ctx, vm.ID, p)
				if err != nil {
					return err
				}
				if a.asJSON() {
					return a.printJSON(got)
				}
				fmt.Fprintf(a.stdout, "JIT enabled on %s/%s.\n", vm.Group, vm.Name)
				printPolicy(a, got)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&ports, "port", nil, "a port to lock, such as 22, 22/tcp, 53/udp, 22/* (repeatable; default: the recommendation)")
	f.StringVar(&max, "max", "", "the longest a request may last, such as 3h, 30m or PT3H (5m to 24h)")
	f.StringArrayVar(&sources, "source", nil, "a source address or CIDR requests may name (repeatable; default any)")
	f.BoolVar(&p.RequireJustification, "require-justification", false, "requests must give a reason")
	f.BoolVar(&p.CloseConnectionsOnExpiry, "close-connections", false, "close established connections when a grant ends")
	f.IntVar(&approvers, "approvers", 0, "requests wait for this many approvals by users with role approver in the VM's group, never the requester (default 0: no approval)")
	f.StringVar(&pendingLife, "pending-lifetime", "", "how long a request may wait for approval, such as 24h (5m to 7 days; default 24h)")
	f.StringVar(&autoMax, "auto-approve-max", "", "auto-approve requests of at most this long, such as 1h")
	f.StringVar(&auto.Hours, "auto-approve-hours", "", "auto-approve requests made within these UTC hours, HH-HH such as 08-18 or 22-06")
	f.StringArrayVar(&auto.RequesterGroups, "auto-approve-group", nil, "auto-approve requests of users holding a role in this group (repeatable)")
	return cmd
}

func (a *app) jitDisableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disable VM",
		Short: "Disable JIT on a VM: remove the lock and end its grants",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onVM(cmd.Context(), args[0], func(c *client.Client, vm jit.VMView) error {
				if err := c.DeletePolicy(cmd.Context(), vm.ID); err != nil {
					return err
				}
				if a.asJSON() {
					return a.printJSON(map[string]string{"disabled": vm.ID})
				}
				fmt.Fprintf(a.stdout, "JIT disabled on %s/%s.\n", vm.Group, vm.Name)
				return nil
			})
		},
	}
}

func (a *app) jitShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show VM",
		Short: "Show a VM's JIT policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onVM(cmd.Context(), args[0], func(c *client.Client, vm jit.VMView) error {
				p, err := c.GetPolicy(cmd.Context(), vm.ID)
				if err != nil {
					return err
				}
				if a.asJSON() {
					return a.printJSON(p)
				}
				printPolicy(a, p)
				return nil
			})
		},
	}
}

func printPolicy(a *app, p jit.Policy) {
	printRules(a, p.Ports)
	fmt.Fprintf(a.stdout, "Justification required: %s; close connections at expiry: %s.\n", yesNo(p.RequireJustification), yesNo(p.CloseConnectionsOnExpiry))
	if p.Approval != nil {
		fmt.Fprintf(a.stdout, "Approval required: %d approver(s); requests wait up to %s.\n", p.Approval.Required, p.Approval.PendingLifetime)
	}
	if !p.UpdatedAt.IsZero() {
		fmt.Fprintf(a.stdout, "Updated %s by %s.\n", fmtTime(p.UpdatedAt), cell(p.UpdatedBy))
	}
}

func printRules(a *app, rules []jit.PortRule) {
	t := newTable(a.stdout, "PORT", "PROTOCOL", "SOURCES", "MAX")
	for _, r := range rules {
		t.row(r.Number, r.Protocol, strings.Join(r.AllowedSourceAddressPrefixes, ","), r.MaxRequestAccessDuration)
	}
	t.flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
