package main

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/ajarhq/ajar/internal/azurensg"
)

// azureCloud is the azure backend when ajard manages Azure subscriptions
// (--azure-subscriptions, optionally --azure-resource-groups): discovery
// and NSG enforcement through azidentity's default credential chain
// (environment, workload identity, managed identity, Azure CLI, ...).
func azureCloud(cfg config, log *slog.Logger) (*cloud, error) {
	if len(cfg.azureSubs) == 0 {
		return nil, nil
	}
	log = log.With("backend", "azure")
	client, err := azurensg.NewDefaultClient(nil, log)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	p := azurensg.NewProvider(azurensg.NewEnforcer(client, log), cfg.azureSubs, cfg.azureGroups)
	return &cloud{provider: p, every: cfg.azureSyncEvery}, nil
}

// azureAPISubscriptions returns the subscriptions the Azure-compatible API
// serves: --azure-api-subscription first (the home of VMs not discovered
// in Azure), then those ajard manages in Azure.
func azureAPISubscriptions(cfg config) []string {
	var out []string
	if cfg.azureAPISub != "" {
		out = append(out, cfg.azureAPISub)
	}
	for _, s := range cfg.azureSubs {
		if !strings.EqualFold(s, cfg.azureAPISub) {
			out = append(out, s)
		}
	}
	return out
}

var subscriptionID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// validSubscription checks that s, when set, is an Azure subscription id:
// Azure's clients put it in resource ids and expect a GUID.
func validSubscription(key, s string) error {
	if s == "" || subscriptionID.MatchString(s) {
		return nil
	}
	return keyErrorf(key, "%q is not a subscription id; use a GUID such as 00000000-0000-0000-0000-000000000001", s)
}
