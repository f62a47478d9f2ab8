package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// cloudSyncSummary is the answer of POST /api/v1/clouds/{backend}/sync
// (control.CloudSyncSummary).
type cloudSyncSummary struct {
	Backend    string `json:"backend"`
	DurationMs int64  `json:"durationMs"`
	Scopes     []struct {
		ID         string `json:"id"`
		Discovered int    `json:"discovered"`
		Error      string `json:"error"`
	} `json:"scopes"`
	Discovered    int      `json:"discovered"`
	Unsupported   int      `json:"unsupported"`
	Exposed       int      `json:"exposed"`
	Missing       []string `json:"missing"`
	Created       []string `json:"created"`
	GroupsCreated []string `json:"groupsCreated"`
	Updated       int      `json:"updated"`
	Unchanged     int      `json:"unchanged"`
	Skipped       []string `json:"skipped"`
}

// cloud is how the CLI speaks of one cloud backend.
type cloud struct {
	backend string // jit.BackendAzure, ...
	name    string // "Azure"
	scope   string // what ajard lists one by one: "subscription"
	groups  string // what VMs are grouped by: "resource groups"
	flag    string // the ajard flag that names the scopes
	ids     string // how the summary names VMs: "ARM ids"
}

var (
	azureCloud = cloud{backend: jit.BackendAzure, name: "Azure", scope: "subscription", groups: "their resource groups",
		flag: "--azure-subscriptions", ids: "NSGs"}
	awsCloud = cloud{backend: jit.BackendAWS, name: "AWS", scope: "region", groups: "their VPCs",
		flag: "--aws-regions", ids: "security groups"}
	gcpCloud = cloud{backend: jit.BackendGCP, name: "Google Cloud", scope: "project", groups: "their projects",
		flag: "--gcp-projects", ids: "firewall rules"}
)

func (a *app) awsCommand() *cobra.Command {
	cmd := parent("aws", "AWS: discover EC2 instances")
	cmd.AddCommand(a.cloudSyncCommand(awsCloud))
	return cmd
}

func (a *app) gcpCommand() *cobra.Command {
	cmd := parent("gcp", "Google Cloud: discover Compute Engine instances")
	cmd.AddCommand(a.cloudSyncCommand(gcpCloud))
	return cmd
}

func (a *app) cloudSyncCommand(cl cloud) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Discover the VMs of the " + cl.name + " " + cl.scope + "s the server manages, now (admins)",
		Long: fmt.Sprintf(`sync makes the server list the VMs of its %[1]s %[2]ss now rather than at its next
scheduled discovery, import new ones into groups named after %[3]s, update known ones
(addresses, OS, power state, %[4]s, health), mark those no longer found as unsupported,
and print what changed. It exits non-zero when a %[2]s could not be listed.`, cl.name, cl.scope, cl.groups, cl.ids),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			err = c.Do(cmd.Context(), http.MethodPost, "/api/v1/clouds/"+cl.backend+"/sync", nil, &raw)
			if jit.ErrorCode(err) == jit.ENotFound {
				return fmt.Errorf("the server manages no %s %ss (ajard %s)", cl.name, cl.scope, cl.flag)
			}
			if err != nil {
				return err
			}
			var s cloudSyncSummary
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("the server's answer: %w", err)
			}
			if a.asJSON() {
				err = a.printJSON(raw)
			} else {
				a.printCloudSync(cl, s)
			}
			if err != nil {
				return err
			}
			var failed []string
			for _, sc := range s.Scopes {
				if sc.Error != "" {
					failed = append(failed, sc.ID)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("discovery failed for %s %s", cl.scope, strings.Join(failed, ", "))
			}
			return nil
		},
	}
}

func (a *app) printCloudSync(cl cloud, s cloudSyncSummary) {
	t := newTable(a.stdout, strings.ToUpper(cl.scope), "VMS", "ERROR")
	for _, sc := range s.Scopes {
		t.row(sc.ID, sc.Discovered, sc.Error)
	}
	t.flush()
	fmt.Fprintf(a.stdout, "\n%d VMs discovered in %.1f s: %d new, %d updated, %d unchanged; %d unsupported, %d with a management port open to the internet.\n",
		s.Discovered, float64(s.DurationMs)/1000, len(s.Created), s.Updated, s.Unchanged, s.Unsupported, s.Exposed)
	for _, l := range []struct {
		title string
		items []string
	}{
		{"New VMs", s.Created},
		{"New groups", s.GroupsCreated},
		{"No longer in " + cl.name, s.Missing},
		{"Skipped", s.Skipped},
	} {
		if len(l.items) > 0 {
			fmt.Fprintf(a.stdout, "%s:\n  %s\n", l.title, strings.Join(l.items, "\n  "))
		}
	}
}
