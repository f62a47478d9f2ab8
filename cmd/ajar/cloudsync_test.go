package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// stubSyncer answers a fixed summary.
type stubSyncer struct{ sum control.CloudSyncSummary }

func (s stubSyncer) SyncNow(context.Context) (control.CloudSyncSummary, error) { return s.sum, nil }

// TestAzureSync runs `ajar azure sync` against the real API handler, in
// process, whose Syncer is a stub: the Syncer itself is tested in
// internal/cloudsync against a fake Azure.
func TestAzureSync(t *testing.T) {
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
	sum := control.CloudSyncSummary{Backend: "azure", DurationMs: 1200, Discovered: 3, Unsupported: 1, Exposed: 1,
		Scopes:          []control.CloudScopeSync{{ID: "sub-a", Discovered: 3}, {ID: "sub-b", Error: "ajar lacks permission to list the virtual machines of subscription sub-b"}},
		Missing:         []string{"rg1/old"},
		DiscoveryResult: control.DiscoveryResult{Created: []string{"rg1/web1", "rg1/web2"}, GroupsCreated: []string{"rg1"}, Updated: 1}}
	api := server.New(ctl, log, nil)
	api.HandleCloudSync("azure", stubSyncer{sum})
	awsSum := sum
	awsSum.Backend, awsSum.Scopes = "aws", []control.CloudScopeSync{{ID: "eu-west-1", Discovered: 3}}
	api.HandleCloudSync("aws", stubSyncer{awsSum})
	srv := httptest.NewServer(api)
	defer srv.Close()
	c := &cli{t: t, env: map[string]string{"AJAR_SERVER": srv.URL, "AJAR_TOKEN": token, "XDG_CONFIG_HOME": t.TempDir()}}

	out, errOut, err := c.run("azure", "sync")
	if err == nil || !strings.Contains(errOut, "discovery failed for subscription sub-b") {
		t.Errorf("err = %v, stderr %q; want the failed subscription named", err, errOut)
	}
	for _, want := range []string{"sub-a", "lacks permission", "3 VMs discovered in 1.2 s: 2 new, 1 updated, 0 unchanged; 1 unsupported, 1 with a management port",
		"New VMs:\n  rg1/web1\n  rg1/web2", "New groups:\n  rg1", "No longer in Azure:\n  rg1/old"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = c.run("aws", "sync")
	if err != nil || !strings.Contains(out, "REGION") || !strings.Contains(out, "eu-west-1") || !strings.Contains(out, "No longer in AWS:\n  rg1/old") {
		t.Errorf("aws sync: %v\n%s", err, out)
	}
	out, _, _ = c.run("-o", "json", "azure", "sync")
	var got control.CloudSyncSummary
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Discovered != 3 || len(got.Created) != 2 {
		t.Errorf("json output %q: %+v, %v", out, got, err)
	}
}

func TestAzureSyncWithoutAzure(t *testing.T) {
	c := newCLI(t)
	errText, _ := c.fails("azure", "sync")
	if !strings.Contains(errText, "manages no Azure subscriptions") {
		t.Errorf("error = %q", errText)
	}
	errText, _ = c.fails("gcp", "sync")
	if !strings.Contains(errText, "manages no Google Cloud projects (ajard --gcp-projects)") {
		t.Errorf("error = %q", errText)
	}
}
