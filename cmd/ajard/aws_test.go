package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestAWSFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--aws-regions", "eu-west-1,Europe"}, `--aws-regions: "Europe" is not an AWS region`},
		{[]string{"--aws-regions", "eu-west-1", "--aws-filters", "tag:env"}, `--aws-filters: "tag:env" is not NAME=VALUE`},
	} {
		_, err := parseConfig(c.args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	cfg, err := parseConfig([]string{"--aws-regions", "eu-west-1, us-east-2", "--aws-filters", "tag:env=prod,tag:env=staging,vpc-id=vpc-1", "--aws-revoke-shadowing"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.aws.regions, []string{"eu-west-1", "us-east-2"}) || !cfg.aws.revoke || len(cfg.aws.filters) != 2 ||
		aws.ToString(cfg.aws.filters[0].Name) != "tag:env" || !slices.Equal(cfg.aws.filters[0].Values, []string{"prod", "staging"}) {
		t.Errorf("config = %+v", cfg.aws)
	}
}
