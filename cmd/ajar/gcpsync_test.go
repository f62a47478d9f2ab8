package main

import (
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/cloudsync"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/gcpfw"
	"github.com/ajarhq/ajar/internal/gcpfw/computefake"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// TestGCPSync runs `ajar gcp sync` against the real API handler whose
// Syncer discovers, through the real Compute SDK, the fake Compute API:
// the test links the SDK, the CLI does not (TestNoCloudSDK).
func TestGCPSync(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctl := control.New(db, log, time.Now)
	const token = "ajar_test-admin-token-0123456789"
	if _, err := ctl.Bootstrap(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	f := computefake.New(t)
	f.AddFirewall("shop-prod", computefake.Rule("allow-ssh", 1000, true, "0.0.0.0/0", []string{"22"}))
	f.AddInstance(computefake.InstanceSpec{Project: "shop-prod", Zone: "europe-west1-b", Name: "web1", InternalIP: "10.0.1.4"})
	f.AddInstance(computefake.InstanceSpec{Project: "shop-prod", Zone: "europe-west1-b", Name: "old1", InternalIP: "10.0.1.5", Status: "TERMINATED"})
	client, err := gcpfw.NewClient(t.Context(), log, nil, f.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.Retry = gcpfw.Backoff{Attempts: 1}
	f.Fail("GET", "/projects/shop-dev/", -1, 403, "forbidden", "Required 'compute.instances.list' permission for 'projects/shop-dev'")
	p := gcpfw.NewProvider(gcpfw.NewEnforcer(client, log), []string{"shop-prod", "shop-dev"}, nil)
	api := server.New(ctl, log, nil)
	api.HandleCloudSync("gcp", cloudsync.New(ctl, p, cloudsync.Config{}, log))
	srv := httptest.NewServer(api)
	defer srv.Close()
	c := &cli{t: t, env: map[string]string{"AJAR_SERVER": srv.URL, "AJAR_TOKEN": token, "XDG_CONFIG_HOME": t.TempDir()}}

	out, errOut, err := c.run("gcp", "sync")
	if err == nil || !strings.Contains(errOut, "shop-dev") {
		t.Errorf("err = %v, stderr %q; want the refused project named", err, errOut)
	}
	for _, want := range []string{"shop-prod", "ajar lacks permission to list the instances of project shop-dev",
		"2 VMs discovered", "2 new", "1 unsupported, 2 with a management port", "shop-prod/old1", "shop-prod/web1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
