package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoGoogleCloudSDK checks that the CLI links none of the Google Cloud
// SDK: `ajar gcp sync` asks ajard, which alone talks to Google Cloud.
func TestNoGoogleCloudSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	found := false
	for _, d := range deps {
		found = found || d == "github.com/ajarhq/ajar/internal/client"
		for _, f := range []string{"cloud.google.com/", "google.golang.org/api/", "google.golang.org/grpc", "github.com/googleapis/"} {
			if strings.HasPrefix(d, f) {
				t.Errorf("ajar links %s", d)
			}
		}
	}
	if !found {
		t.Errorf("ajar does not link internal/client (the check would not see what it links): %d packages", len(deps))
	}
}
