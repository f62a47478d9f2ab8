package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ajarhq/ajar/internal/gcpfw"
)

// gcpFlags are the --gcp-* flags: the Google Cloud projects ajard
// manages, the zones discovery is limited to, and how often it runs.
type gcpFlags struct {
	projectList, zoneList string
	projects, zones       []string
	every                 time.Duration
}

func (f *gcpFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.projectList, "gcp-projects", "", "comma-separated Google Cloud project ids whose Compute Engine instances ajar manages")
	fs.StringVar(&f.zoneList, "gcp-zones", "", "comma-separated zones to limit Google Cloud discovery to (default every zone)")
	fs.DurationVar(&f.every, "gcp-sync-interval", 5*time.Minute, "how often to re-discover Google Cloud instances")
}

var (
	gcpProjectID = regexp.MustCompile(`^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$`)
	gcpZone      = regexp.MustCompile(`^[a-z]+(-[a-z]+)+[0-9]+-[a-z]$`)
)

// check parses and checks the lists.
func (f *gcpFlags) check() error {
	f.projects, f.zones = splitList(f.projectList), splitList(f.zoneList)
	for _, p := range f.projects {
		if !gcpProjectID.MatchString(p) {
			return fmt.Errorf("--gcp-projects: %q is not a project id (6 to 30 lower-case letters, digits or '-', starting with a letter)", p)
		}
	}
	for _, z := range f.zones {
		if !gcpZone.MatchString(z) {
			return fmt.Errorf("--gcp-zones: %q is not a zone such as europe-west1-b", z)
		}
	}
	if len(f.zones) > 0 && len(f.projects) == 0 {
		return fmt.Errorf("--gcp-zones: needs --gcp-projects")
	}
	return nil
}

// gcpCloud is the gcp backend when ajard manages Google Cloud projects
// (--gcp-projects, optionally --gcp-zones): discovery and VPC firewall
// enforcement with Application Default Credentials.
func gcpCloud(cfg config, log *slog.Logger) (*cloud, error) {
	if len(cfg.gcp.projects) == 0 {
		return nil, nil
	}
	log = log.With("backend", "gcp")
	client, err := gcpfw.NewClient(context.Background(), log, nil)
	if err != nil {
		return nil, fmt.Errorf("gcp: %w", err)
	}
	p := gcpfw.NewProvider(gcpfw.NewEnforcer(client, log), cfg.gcp.projects, cfg.gcp.zones)
	return &cloud{provider: p, every: cfg.gcp.every}, nil
}
