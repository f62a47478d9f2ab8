package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

func (a *app) groupCommand() *cobra.Command {
	cmd := parent("group", "List and create groups")
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			gs, err := c.ListGroups(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(gs))
			}
			t := newTable(a.stdout, "NAME", "CREATED")
			for _, g := range gs {
				t.row(g.Name, fmtTime(g.CreatedAt))
			}
			return t.flush()
		},
	}, &cobra.Command{
		Use:   "add NAME",
		Short: "Create a group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.CreateGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(g)
			}
			fmt.Fprintf(a.stdout, "Created group %s.\n", g.Name)
			return nil
		},
	})
	return cmd
}

// list wraps items the way the API's list answers do, so that -o json
// prints the same shape as the API.
func list[T any](items []T) map[string][]T {
	if items == nil {
		items = []T{}
	}
	return map[string][]T{"value": items}
}

func (a *app) vmCommand() *cobra.Command {
	cmd := parent("vm", "List, show, register and remove VMs")
	cmd.AddCommand(a.vmLsCommand(), a.vmShowCommand(), a.vmAddCommand(), a.vmRmCommand(), a.vmEnrollTokenCommand())
	return cmd
}

func (a *app) vmLsCommand() *cobra.Command {
	var group, jitState string
	cmd := &cobra.Command{
		Use:   "ls [--group G] [--jit configured|not-configured|unsupported]",
		Short: "List VMs with their JIT state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			vms, err := c.ListVMs(cmd.Context(), group, jitState, "")
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(list(vms))
			}
			t := newTable(a.stdout, "NAME", "GROUP", "BACKEND", "JIT", "HEALTH/REASON", "ACTIVE-GRANTS", "LAST-ACCESS")
			for _, v := range vms {
				last := fmtTimePtr(v.LastAccess)
				if last != "" && v.LastUser != "" {
					last += " (" + v.LastUser + ")"
				}
				t.row(v.Name, v.Group, v.Backend, v.Classification.JIT, healthReason(v), v.ActiveGrants, last)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "only VMs of this group")
	cmd.Flags().StringVar(&jitState, "jit", "", "only VMs in this state: configured, not-configured or unsupported")
	return cmd
}

// healthReason is the HEALTH/REASON column: health and why for a VM
// without JIT, the reason for an unsupported one, any enforcement problem
// for a configured one.
func healthReason(v jit.VMView) string {
	cl := v.Classification
	var parts []string
	for _, s := range []string{cl.Health, cl.Reason, v.EnforcementError} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

func (a *app) vmShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show VM",
		Short: "Show a VM, its JIT state and policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onVM(cmd.Context(), args[0], func(c *client.Client, v jit.VMView) error {
				if a.asJSON() {
					return a.printJSON(v)
				}
				t := newTable(a.stdout)
				t.row("ID:", v.ID)
				t.row("Name:", v.Name)
				t.row("Group:", v.Group)
				t.row("Backend:", v.Backend)
				t.row("OS:", v.OS)
				t.row("Addresses:", strings.Join(v.Addresses, ", "))
				t.row("Labels:", fmtLabels(v.Labels))
				t.row("JIT:", v.Classification.JIT)
				if hr := healthReason(v); hr != "" {
					t.row("Health/reason:", hr)
				}
				t.row("Active grants:", v.ActiveGrants)
				t.row("Approved (7d):", v.ApprovedLast7d)
				t.row("Last access:", strings.TrimSpace(fmtTimePtr(v.LastAccess)+" "+v.LastUser))
				if v.Report != nil {
					t.row("Last report:", fmtTime(v.Report.Time))
				}
				for _, s := range v.ShadowedRules {
					t.row("Shadowed rule:", s)
				}
				t.flush()
				if v.Policy != nil {
					fmt.Fprintln(a.stdout, "\nJIT policy:")
					printPolicy(a, *v.Policy)
				} else if len(v.Recommended) > 0 {
					fmt.Fprintln(a.stdout, "\nRecommended ports (ajar jit enable):")
					printRules(a, v.Recommended)
				}
				return nil
			})
		},
	}
}

func fmtLabels(m map[string]string) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, k+"="+m[k])
	}
	return strings.Join(s, ", ")
}

func (a *app) vmAddCommand() *cobra.Command {
	n := jit.NewVM{}
	var labels []string
	cmd := &cobra.Command{
		Use:   "add NAME --group G [--os linux|windows] [--backend agent|azure] [--address IP]... [--label k=v]...",
		Short: "Register a VM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n.Name = args[0]
			n.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q must be key=value", l)
				}
				n.Labels[k] = v
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			vm, err := c.CreateVM(cmd.Context(), n)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(vm)
			}
			fmt.Fprintf(a.stdout, "Registered VM %s/%s (id %s).\n", vm.Group, vm.Name, vm.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&n.Group, "group", "", "the VM's group (required)")
	f.StringVar(&n.OS, "os", "linux", "linux or windows")
	f.StringVar(&n.Backend, "backend", jit.BackendAgent, "what enforces rules for it: "+strings.Join(jit.Backends, ", ")+" (cloud VMs are best imported by ajard's discovery)")
	f.StringArrayVar(&n.Addresses, "address", nil, "an address of the VM (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "a label key=value (repeatable)")
	cmd.MarkFlagRequired("group")
	return cmd
}

func (a *app) vmRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rm VM",
		Short: "Remove a VM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onVM(cmd.Context(), args[0], func(c *client.Client, v jit.VMView) error {
				if err := c.DeleteVM(cmd.Context(), v.ID); err != nil {
					return err
				}
				if a.asJSON() {
					return a.printJSON(map[string]string{"deleted": v.ID})
				}
				fmt.Fprintf(a.stdout, "Removed VM %s/%s.\n", v.Group, v.Name)
				return nil
			})
		},
	}
}

func (a *app) vmEnrollTokenCommand() *cobra.Command {
	var n jit.NewEnrollToken
	var ttl string
	cmd := &cobra.Command{
		Use:   "enroll-token --group G [--ttl 1h] [--uses N]",
		Short: "Create a token that enrolls hosts (ajar-agent) into a group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if n.TTL, err = isoDuration("ttl", ttl); err != nil {
				return err
			}
			s, err := a.settings()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			tok, err := c.CreateEnrollToken(cmd.Context(), n)
			if err != nil {
				return err
			}
			if a.asJSON() {
				return a.printJSON(tok)
			}
			enroll := "ajar-agent enroll --server " + c.BaseURL + " --token " + tok.Secret
			if s.Fingerprint != "" {
				enroll += " --ca-fingerprint " + s.Fingerprint
			}
			fmt.Fprintf(a.stdout, "Enrollment token for group %s", tok.Group)
			if tok.ExpiresAt != nil {
				fmt.Fprintf(a.stdout, ", valid until %s", fmtTime(*tok.ExpiresAt))
			}
			if tok.UsesLeft != nil {
				fmt.Fprintf(a.stdout, ", %d use(s)", *tok.UsesLeft)
			}
			fmt.Fprintf(a.stdout, " (shown once):\n  %s\n\nOn each host, as root, run:\n  %s\n", tok.Secret, enroll)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&n.Group, "group", "", "the group enrolled hosts join (required)")
	f.StringVar(&ttl, "ttl", "", "how long the token is valid, such as 1h (default: the server's, 1h)")
	f.IntVar(&n.Uses, "uses", 0, "how many hosts may enroll with it (default: the server's, 1)")
	cmd.MarkFlagRequired("group")
	return cmd
}
