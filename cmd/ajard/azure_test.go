package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAzureAPISubscription(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, bad := range []string{"my-sub", "00000000-0000-0000-0000-00000000000g", "00000000-0000-0000-0000-000000000001/x"} {
		_, err := parseConfig([]string{"--azure-api-subscription", bad}, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--azure-api-subscription") || !strings.Contains(err.Error(), "GUID") {
			t.Errorf("--azure-api-subscription %q: got %v, want an error naming the flag and the form", bad, err)
		}
	}
	const own, managed = "11111111-2222-3333-4444-555555555555", "00000000-0000-0000-0000-000000000001"
	cfg, err := parseConfig([]string{"--azure-api-subscription", own, "--azure-subscriptions", managed + "," + strings.ToUpper(own)}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{own, managed}, azureAPISubscriptions(cfg)); d != "" {
		t.Errorf("served subscriptions (-want +got):\n%s", d)
	}
	cfg, err = parseConfig(nil, func(k string) string {
		if k == "AJAR_AZURE_API_SUBSCRIPTION" {
			return own
		}
		return ""
	}, io.Discard)
	if err != nil || cfg.azureAPISub != own {
		t.Errorf("from the environment: %v %q", err, cfg.azureAPISub)
	}
}
