package main

import (
	"context"
	"log/slog"
	"regexp"
	"strings"

	"github.com/ajarhq/ajar/internal/azurensg"
	"github.com/ajarhq/ajar/internal/cloudsync"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/server"
)

// runAzure runs the azure backend until ctx ends when ajard manages Azure
// subscriptions (--azure-subscriptions): discovery, NSG enforcement and
// POST /api/v1/azure/sync, through azidentity's default credential chain
// (environment, workload identity, managed identity, Azure CLI, ...). Of
// several replicas, one discovers and enforces at a time (the others take
// over when it stops); any of them answers POST /api/v1/azure/sync.
// Without subscriptions it returns at once.
func runAzure(ctx context.Context, cfg config, ctl *control.Control, api *server.Server, log *slog.Logger) {
	if len(cfg.azureSubs) == 0 {
		return
	}
	log = log.With("backend", "azure")
	client, err := azurensg.NewDefaultClient(nil, log)
	if err != nil {
		log.Error("azure backend not started", "err", err)
		return
	}
	syncer := cloudsync.New(ctl, client, azurensg.NewEnforcer(client, log), cloudsync.Config{
		Subscriptions:  cfg.azureSubs,
		ResourceGroups: cfg.azureGroups,
		Every:          cfg.azureSyncEvery,
	}, log)
	api.HandleAzureSync(syncer)
	log.Info("azure backend started", "subscriptions", cfg.azureSubs, "resourceGroups", cfg.azureGroups, "every", cfg.azureSyncEvery)
	if err := syncer.RunLeading(ctx); err != nil {
		log.Error("azure backend stopped", "err", err)
	}
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
