package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajarhq/ajar/internal/awsec2"
)

// awsFlags are the --aws-* flags: the regions ajard manages in AWS,
// optional EC2 filters, whether ajar may revoke rules that open locked
// ports to the internet, and how often to re-discover.
type awsFlags struct {
	regions []string
	filters []types.Filter
	revoke  bool
	every   time.Duration

	rawRegions, rawFilters string
}

func (a *awsFlags) register(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&a.rawRegions, "aws-regions", env("AJAR_AWS_REGIONS", ""), "comma-separated AWS regions whose EC2 instances ajar manages, credentials from the SDK's default chain (env AJAR_AWS_REGIONS)")
	fs.StringVar(&a.rawFilters, "aws-filters", env("AJAR_AWS_FILTERS", ""), "comma-separated EC2 filters limiting AWS discovery, such as tag:env=prod,vpc-id=vpc-0123 (env AJAR_AWS_FILTERS)")
	fs.BoolVar(&a.revoke, "aws-revoke-shadowing", false, "let ajar revoke (and record, to restore them) rules that open a locked port to 0.0.0.0/0 or ::/0, in security groups one instance alone uses")
	fs.DurationVar(&a.every, "aws-sync-interval", 5*time.Minute, "how often to re-discover AWS instances")
}

var awsRegion = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)

func (a *awsFlags) check() error {
	a.regions = splitList(a.rawRegions)
	for _, r := range a.regions {
		if !awsRegion.MatchString(r) {
			return fmt.Errorf("--aws-regions: %q is not an AWS region such as eu-west-1", r)
		}
	}
	f, err := awsec2.ParseFilters(a.rawFilters)
	if err != nil {
		return err
	}
	a.filters = f
	return nil
}

// awsCloud is the aws backend when ajard manages AWS regions
// (--aws-regions): discovery and security group enforcement through the
// AWS SDK's default credential chain (environment, shared config and SSO
// profiles, web identity, instance metadata).
func awsCloud(cfg config, log *slog.Logger) (*cloud, error) {
	if len(cfg.aws.regions) == 0 {
		return nil, nil
	}
	client, err := awsec2.NewDefaultClient(context.Background(), log.With("backend", "aws"))
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	p := awsec2.NewProvider(awsec2.NewEnforcer(client, cfg.aws.revoke), cfg.aws.regions, cfg.aws.filters)
	return &cloud{provider: p, every: cfg.aws.every}, nil
}
