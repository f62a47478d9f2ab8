package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHeavyDependencies checks that the agent binary links no cloud SDK
// and no database driver: it runs on every host, as root.
func TestNoHeavyDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps printed only %d packages: %s", len(deps), out)
	}
	forbidden := []string{"database/sql", "modernc.org/sqlite", "github.com/jackc/", "github.com/Azure/", "cloud.google.com/", "github.com/aws/", "github.com/chromedp/"}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("ajar-agent links %s", d)
			}
		}
	}
	for _, want := range []string{"github.com/google/nftables", "github.com/ajarhq/ajar/internal/agent"} {
		found := false
		for _, d := range deps {
			found = found || d == want
		}
		if !found {
			t.Errorf("ajar-agent does not link %s (the check would not see what it links)", want)
		}
	}
}
