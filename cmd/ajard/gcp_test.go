package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestGCPFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--gcp-projects", "Shop_Prod"}, "--gcp-projects"},
		{[]string{"--gcp-projects", "abc"}, "--gcp-projects"},
		{[]string{"--gcp-projects", "shop-prod", "--gcp-zones", "europe-west1"}, "--gcp-zones"},
		{[]string{"--gcp-zones", "europe-west1-b"}, "--gcp-zones"},
	} {
		if _, err := parseConfig(c.args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%v: got %v, want an error naming %s", c.args, err, c.flag)
		}
	}
	cfg, err := parseConfig([]string{"--gcp-projects", "shop-prod, example.com:net-host", "--gcp-zones", "europe-west1-b,us-central1-a"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.gcp.projects, []string{"shop-prod", "example.com:net-host"}) || !slices.Equal(cfg.gcp.zones, []string{"europe-west1-b", "us-central1-a"}) {
		t.Errorf("projects %v zones %v", cfg.gcp.projects, cfg.gcp.zones)
	}
	cfg, err = parseConfig(nil, func(k string) string {
		return map[string]string{"AJAR_GCP_PROJECTS": "shop-prod"}[k]
	}, io.Discard)
	if err != nil || !slices.Equal(cfg.gcp.projects, []string{"shop-prod"}) || len(cfg.gcp.zones) != 0 {
		t.Errorf("from the environment: %v %v", cfg.gcp.projects, err)
	}
}
