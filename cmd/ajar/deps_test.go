package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNoCloudSDK checks that the CLI links no cloud SDK and no database
// driver: `ajar aws sync` and the like only call ajard's API.
func TestNoCloudSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/ajarhq/ajar/internal/client") {
		t.Fatalf("ajar does not link internal/client (the check would not see what it links): %d packages", len(deps))
	}
	for _, d := range deps {
		for _, f := range []string{"github.com/Azure/", "cloud.google.com/", "google.golang.org/api/", "google.golang.org/grpc", "github.com/googleapis/", "github.com/aws/", "modernc.org/sqlite", "github.com/jackc/"} {
			if strings.HasPrefix(d, f) {
				t.Errorf("ajar links %s", d)
			}
		}
	}
}
