package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// azureSyncSummary is the answer of POST /api/v1/azure/sync
// (control.CloudSyncSummary).
type azureSyncSummary struct {
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

func (a *app) azureSyncCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Discover the VMs of the Azure subscriptions the server manages, now (admins)",
		Long: `sync makes the server list the VMs of its Azure subscriptions now rather than at its next
scheduled discovery (ajard --azure-sync-interval), import new ones into groups named after
their resource groups, update known ones (addresses, OS, power state, NSGs, health), mark
those no longer found as unsupported, and print what changed. It exits non-zero when a
subscription could not be listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			err = c.Do(cmd.Context(), http.MethodPost, "/api/v1/azure/sync", nil, &raw)
			if jit.ErrorCode(err) == jit.ENotFound {
				return errors.New("the server manages no Azure subscriptions (ajard --azure-subscriptions)")
			}
			if err != nil {
				return err
			}
			var s azureSyncSummary
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("the server's answer: %w", err)
			}
			if a.asJSON() {
				err = a.printJSON(raw)
			} else {
				a.printAzureSync(s)
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
				return fmt.Errorf("discovery failed for subscription %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
}

func (a *app) printAzureSync(s azureSyncSummary) {
	t := newTable(a.stdout, "SUBSCRIPTION", "VMS", "ERROR")
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
		{"No longer in Azure", s.Missing},
		{"Skipped", s.Skipped},
	} {
		if len(l.items) > 0 {
			fmt.Fprintf(a.stdout, "%s:\n  %s\n", l.title, strings.Join(l.items, "\n  "))
		}
	}
}
