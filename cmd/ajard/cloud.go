package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/cloudsync"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/server"
)

// cloud is a cloud backend ajard runs: its provider and how often it is
// discovered again.
type cloud struct {
	provider cloudsync.Provider
	every    time.Duration
}

// clouds are the cloud backends ajard knows. Each builds its cloud from
// the configuration, or returns nil when the configuration names none of
// its scopes. Adding a cloud is a line here and a file of its own.
var clouds = []func(cfg config, log *slog.Logger) (*cloud, error){
	azureCloud, // azure.go
	awsCloud,   // aws.go
	gcpCloud,   // gcp.go
}

// runClouds runs every configured cloud backend until ctx ends:
// discovery, enforcement, and POST /api/v1/clouds/{backend}/sync on api. Of
// several replicas, one runs each backend at a time (the others take over
// when it stops); any of them answers the sync route.
func runClouds(ctx context.Context, cfg config, ctl *control.Control, api *server.Server, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, build := range clouds {
		c, err := build(cfg, log)
		if err != nil {
			log.Error("cloud backend not started", "err", err)
			continue
		}
		if c == nil {
			continue
		}
		backend := c.provider.Backend()
		blog := log.With("backend", backend)
		syncer := cloudsync.New(ctl, c.provider, cloudsync.Config{Every: c.every}, blog)
		api.HandleCloudSync(backend, syncer)
		blog.Info("cloud backend started", "scopes", c.provider.Scopes(), "every", c.every)
		wg.Go(func() {
			if err := syncer.RunLeading(ctx); err != nil {
				blog.Error("cloud backend stopped", "err", err)
			}
		})
	}
}
