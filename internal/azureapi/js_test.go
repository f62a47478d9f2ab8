package azureapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// jsModules returns a node_modules folder with testdata/js's locked
// packages: $AJAR_TEST_JS_MODULES when scripts/test.sh installed them,
// else installed by npm ci into the test's temp dir (npm's cache makes
// that fast after the first time).
func jsModules(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("AJAR_TEST_JS_MODULES"); d != "" {
		return d
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: cannot install Microsoft's JavaScript SDK")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "js", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// TestJavaScriptSDK drives the API with Microsoft's JavaScript SDK,
// @azure/arm-security, over TLS (the SDK sends bearer tokens over https
// only), trusting ajard's self-signed certificate: create, get, the four
// lists page by page, initiate, a refused initiate, delete twice, and a get after.
func TestJavaScriptSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: cannot run Microsoft's JavaScript SDK")
	}
	modules := jsModules(t)
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--tls", "auto", "--azure-api-subscription", sub, "--azure-location", "westeurope"}})
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("ajard --tls auto serves %s", srv.URL)
	}
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "rg-a"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"web-1", "web-2"} {
		if _, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: n, Group: "rg-a"}); err != nil {
			t.Fatal(err)
		}
	}
	vm := armVM("rg-a", "web-1")

	// Node resolves packages from the script's folder.
	work := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(work, "node_modules")); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join("testdata", "js", "jit.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "jit.mjs"), script, 0o600); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, node, filepath.Join(work, "jit.mjs"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"NODE_EXTRA_CA_CERTS="+filepath.Join(srv.Dir, "tls.crt"),
		"AJAR_URL="+srv.URL,
		"AJAR_TOKEN="+ajardtest.AdminToken,
		"AJAR_SUBSCRIPTION="+sub,
		"AJAR_GROUP=rg-a",
		"AJAR_LOCATION=westeurope",
		"AJAR_VM="+vm,
		"AJAR_VM2="+armVM("rg-a", "web-2"),
		"AJAR_SOURCE=198.51.100.7",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node jit.mjs: %v\n%s\najard log:\n%s", err, stderr.String(), srv.Log.String())
	}

	type port struct {
		Number                       int
		Protocol                     string
		AllowedSourceAddressPrefix   string
		AllowedSourceAddressPrefixes []string
		MaxRequestAccessDuration     string
		EndTimeUtc                   time.Time
		Status, StatusReason         string
	}
	type vmEntry struct {
		ID    string
		Ports []port
	}
	type request struct {
		VirtualMachines []vmEntry
		StartTimeUtc    time.Time
		Requestor       string
		Justification   string
	}
	// The SDK flattens a policy's properties.
	type policy struct {
		ID, Name, Type, Kind, Location, ProvisioningState string
		VirtualMachines                                   []vmEntry
		Requests                                          []request
	}
	type failure struct {
		StatusCode int
		Code       string
	}
	var out struct {
		Created, Second, Got, AfterInitiate                                   policy
		List, ListByRegion, ListByResourceGroup, ListByResourceGroupAndRegion [][]string
		OtherRegion, ListAfterDelete                                          [][]string
		Initiated                                                             request
		BadInitiate, DeletedAgain, Gone                                       *failure
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("script output: %v\n%s", err, stdout.String())
	}

	id := "/subscriptions/" + sub + "/resourceGroups/rg-a/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
	for what, p := range map[string]policy{"createOrUpdate": out.Created, "get": out.Got} {
		if p.ID != id || p.Name != "default" || p.Type != "Microsoft.Security/locations/jitNetworkAccessPolicies" || p.Kind != "Basic" ||
			p.Location != "westeurope" || p.ProvisioningState != "Succeeded" {
			t.Errorf("%s: got %+v", what, p)
		}
		if len(p.VirtualMachines) != 1 || p.VirtualMachines[0].ID != vm || len(p.VirtualMachines[0].Ports) != 2 {
			t.Fatalf("%s: VMs %+v", what, p.VirtualMachines)
		}
		p22, p3389 := p.VirtualMachines[0].Ports[0], p.VirtualMachines[0].Ports[1]
		if p22.Number != 22 || p22.Protocol != "TCP" || p22.AllowedSourceAddressPrefix != "*" || p22.MaxRequestAccessDuration != "PT3H" {
			t.Errorf("%s: port 22 %+v", what, p22)
		}
		if p3389.Number != 3389 || p3389.Protocol != "*" || !slices.Equal(p3389.AllowedSourceAddressPrefixes, []string{"198.51.100.0/24", "203.0.113.0/24"}) ||
			p3389.MaxRequestAccessDuration != "PT1H" {
			t.Errorf("%s: port 3389 %+v", what, p3389)
		}
	}
	// Pages of one policy each, the SDK following ajard's https nextLinks.
	if out.Second.ID != strings.TrimSuffix(id, "default")+"second" {
		t.Errorf("second policy: got id %q", out.Second.ID)
	}
	pages := [][]string{{id}, {out.Second.ID}}
	for what, got := range map[string][][]string{"list": out.List, "listByRegion": out.ListByRegion,
		"listByResourceGroup": out.ListByResourceGroup, "listByResourceGroupAndRegion": out.ListByResourceGroupAndRegion} {
		if !slices.EqualFunc(got, pages, slices.Equal) {
			t.Errorf("%s: got pages %q, want %q", what, got, pages)
		}
	}
	for what, got := range map[string][][]string{"listByRegion(eastus2)": out.OtherRegion, "list after delete": out.ListAfterDelete} {
		if len(got) > 1 || len(got) == 1 && len(got[0]) > 0 {
			t.Errorf("%s: got pages %q, want no policies", what, got)
		}
	}

	in := out.Initiated
	if in.Justification != "deploy hotfix" || in.Requestor == "" || time.Since(in.StartTimeUtc).Abs() > time.Minute ||
		len(in.VirtualMachines) != 1 || in.VirtualMachines[0].ID != vm || len(in.VirtualMachines[0].Ports) != 1 {
		t.Fatalf("initiate: got %+v", in)
	}
	ip := in.VirtualMachines[0].Ports[0]
	if ip.Number != 22 || ip.AllowedSourceAddressPrefix != "198.51.100.7" || ip.Status != "Initiated" || ip.StatusReason != "UserRequested" ||
		ip.EndTimeUtc.Before(time.Now().Add(25*time.Minute)) || ip.EndTimeUtc.After(time.Now().Add(31*time.Minute)) {
		t.Errorf("initiate: port %+v", ip)
	}
	if rs := out.AfterInitiate.Requests; len(rs) != 1 || rs[0].Justification != "deploy hotfix" || len(rs[0].VirtualMachines) != 1 ||
		len(rs[0].VirtualMachines[0].Ports) != 1 || rs[0].VirtualMachines[0].Ports[0].Status != "Initiated" {
		t.Errorf("get after initiate: requests %+v", rs)
	}
	if out.BadInitiate == nil || out.BadInitiate.StatusCode != 400 || out.BadInitiate.Code != "BadRequest" {
		t.Errorf("initiate of a port outside the policy: got %+v, want 400 BadRequest", out.BadInitiate)
	}
	if out.DeletedAgain != nil {
		t.Errorf("second delete (204): got %+v, want success", out.DeletedAgain)
	}
	if out.Gone == nil || out.Gone.StatusCode != 404 || out.Gone.Code != "NotFound" {
		t.Errorf("get after delete: got %+v, want 404 NotFound", out.Gone)
	}
}
