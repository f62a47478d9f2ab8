package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

const azureSub = "00000000-0000-0000-0000-000000000001"

// newAzureCLI starts a server managing azureSub, with the VMs the
// testdata policies name: web-01 (discovered in Azure) and win-01 (an
// agent VM), in group rg-prod (resource group RG-Prod).
func newAzureCLI(t *testing.T) (*cli, map[string]jit.VM) {
	t.Helper()
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", azureSub, "--azure-location", "westeurope"}})
	c := &cli{t: t, srv: srv, env: map[string]string{
		"AJAR_SERVER":     srv.URL,
		"AJAR_TOKEN":      ajardtest.AdminToken,
		"XDG_CONFIG_HOME": t.TempDir(),
	}}
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "rg-prod"); err != nil {
		t.Fatal(err)
	}
	vms := map[string]jit.VM{}
	for _, n := range []jit.NewVM{
		{Name: "web-01", Group: "rg-prod", Backend: jit.BackendAzure, OS: "linux", Addresses: []string{"10.1.0.4"},
			ExternalID: "/subscriptions/" + azureSub + "/resourceGroups/RG-Prod/providers/Microsoft.Compute/virtualMachines/web-01",
			Labels:     map[string]string{"azure.subscription": azureSub, "azure.resource-group": "RG-Prod", "azure.location": "westeurope"}},
		{Name: "win-01", Group: "rg-prod", OS: "windows"},
	} {
		vm, err := srv.Admin.CreateVM(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		vms[vm.Name] = vm
	}
	return c, vms
}

func (c *cli) policyPorts(vmID string) []jit.PortRule {
	c.t.Helper()
	p, err := c.srv.Admin.GetPolicy(c.t.Context(), vmID)
	if err != nil {
		c.t.Fatalf("policy of %s: %v", vmID, err)
	}
	return p.Ports
}

func TestAzureImportPolicy(t *testing.T) {
	c, vms := newAzureCLI(t)
	out := c.must("azure", "import-policy", filepath.Join("testdata", "azure-jit-policy.json"))
	for _, want := range []string{"RG-Prod/westeurope/default", "web-01", "22/*,3389/*", "win-01", "3389/TCP,22/TCP", "Imported 1 JIT policy (2 VMs)."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	want := map[string][]jit.PortRule{
		"web-01": {
			{Number: 22, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
			{Number: 3389, Protocol: "*", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
		},
		"win-01": {
			{Number: 3389, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"203.0.113.0/24", "198.51.100.17/32"}, MaxRequestAccessDuration: "PT1H"},
			{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"10.0.0.0/8"}, MaxRequestAccessDuration: "PT30M"},
		},
	}
	for name, ports := range want {
		if d := cmp.Diff(ports, c.policyPorts(vms[name].ID)); d != "" {
			t.Errorf("policy of %s (-want +got):\n%s", name, d)
		}
	}

	// The same policy, under the same name, through the Azure API.
	var got struct {
		ID         string
		Properties struct {
			VirtualMachines []struct{ ID string }
		}
	}
	path := "/subscriptions/" + azureSub + "/resourceGroups/RG-Prod/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default?api-version=2020-01-01"
	if err := c.srv.Admin.Do(t.Context(), http.MethodGet, path, nil, &got); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range got.Properties.VirtualMachines {
		ids = append(ids, v.ID[strings.LastIndex(v.ID, "/")+1:])
	}
	if !strings.HasSuffix(got.ID, "/jitNetworkAccessPolicies/default") || cmp.Diff([]string{"web-01", "win-01"}, ids) != "" {
		t.Errorf("Azure API shows %s with VMs %v", got.ID, ids)
	}

	// Importing again is idempotent; -o json prints the policies.
	var res []struct {
		ID, Name string
	}
	c.json(&res, "azure", "import-policy", filepath.Join("testdata", "azure-jit-policy.json"))
	if len(res) != 1 || res[0].Name != "default" {
		t.Errorf("-o json printed %+v", res)
	}

	// An exported ARM template replaces it: parameters, variables,
	// concat() and resourceId() resolved, from stdin.
	tmpl, err := os.ReadFile(filepath.Join("testdata", "azure-jit-policy-template.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := c.runIn(string(tmpl), "azure", "import-policy", "-"); err == nil || !strings.Contains(errOut, "give --subscription") {
		t.Errorf("template with resourceId() and no --subscription: err %v, stderr %s", err, errOut)
	}
	out, errOut, err := c.runIn(string(tmpl), "azure", "import-policy", "--subscription", azureSub, "--resource-group", "RG-Prod", "-")
	if err != nil {
		t.Fatalf("import template: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "Imported 1 JIT policy (2 VMs).") {
		t.Errorf("template import printed:\n%s", out)
	}
	if d := cmp.Diff([]jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}},
		c.policyPorts(vms["web-01"].ID)); d != "" {
		t.Errorf("web-01 after the template (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]jit.PortRule{
		{Number: 3389, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT2H"},
		{Number: 5986, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"},
	}, c.policyPorts(vms["win-01"].ID)); d != "" {
		t.Errorf("win-01 after the template (-want +got):\n%s", d)
	}
}

func TestAzureImportPolicyErrors(t *testing.T) {
	c, _ := newAzureCLI(t)
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := func(sub, vm string) map[string]any {
		return map[string]any{
			"id":   "/subscriptions/" + sub + "/resourceGroups/RG-Prod/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/ops",
			"type": "Microsoft.Security/locations/jitNetworkAccessPolicies",
			"properties": map[string]any{"virtualMachines": []any{map[string]any{
				"id":    "/subscriptions/" + sub + "/resourceGroups/RG-Prod/providers/Microsoft.Compute/virtualMachines/" + vm,
				"ports": []any{map[string]any{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}},
			}}},
		}
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "no such file"},
		{"unknown VM", write("vm.json", policy(azureSub, "db-09")), "virtual machine '/subscriptions/" + azureSub + "/resourceGroups/RG-Prod/providers/Microsoft.Compute/virtualMachines/db-09' is not known to ajar"},
		{"unmanaged subscription", write("sub.json", policy("00000000-0000-0000-0000-000000000009", "web-01")), "not managed by this ajar server"},
		{"no policies", write("empty.json", map[string]any{"value": []any{}}), "no Microsoft.Security/locations/jitNetworkAccessPolicies resource found"},
		{"other resource type", write("type.json", map[string]any{"type": "Microsoft.Compute/virtualMachines", "properties": map[string]any{"virtualMachines": []any{}}}), "not Microsoft.Security/locations/jitNetworkAccessPolicies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut := c.fails("azure", "import-policy", tc.file)
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
		})
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.json"), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut := c.fails("azure", "import-policy", filepath.Join(dir, "garbage.json")); !strings.Contains(errOut, "not JSON") {
		t.Errorf("garbage: %s", errOut)
	}
}

func TestParseAzurePolicies(t *testing.T) {
	vm := func(rg, name string) string {
		return "/subscriptions/" + azureSub + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/virtualMachines/" + name
	}
	res := func(id, name, loc, vmID string) map[string]any {
		return map[string]any{"id": id, "name": name, "location": loc, "properties": map[string]any{"virtualMachines": []any{
			map[string]any{"id": vmID, "ports": []any{map[string]any{"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "PT3H"}}},
		}}}
	}
	list := []any{
		res("/subscriptions/"+azureSub+"/resourceGroups/rg1/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/a", "a", "westeurope", vm("rg1", "x")),
		res("", "b", "eastus", vm("rg2", "y")), // no id: from its VMs, name and location
	}
	want := []string{azureSub + " rg1 westeurope a " + vm("rg1", "x"), azureSub + " rg2 eastus b " + vm("rg2", "y")}
	show := func(ps []azurePolicy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, strings.Join([]string{p.Subscription, p.ResourceGroup, p.Location, p.Name, p.VMs[0].ID}, " "))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   any
		o    importOptions
		want []string
	}{
		{"array", list, importOptions{}, want},
		{"value list", map[string]any{"value": list}, importOptions{}, want},
		{"options win", list[:1], importOptions{subscription: "s", resourceGroup: "g", location: "l", name: "n"}, []string{"s g l n " + vm("rg1", "x")}},
		{"template", map[string]any{
			"parameters": map[string]any{"loc": map[string]any{"defaultValue": "northeurope"}},
			"variables":  map[string]any{"vm": "[format('{0}-{1}', 'web', 7)]"},
			"resources": []any{
				map[string]any{"type": "Microsoft.Compute/virtualMachines", "name": "ignored"},
				map[string]any{"type": "Microsoft.Security/locations/jitNetworkAccessPolicies", "name": "[concat(parameters('loc'), '/', 'p''1')]",
					"properties": map[string]any{"virtualMachines": []any{map[string]any{
						"id":    "[resourceId('other-rg', 'Microsoft.Compute/virtualMachines', variables('vm'))]",
						"ports": []any{map[string]any{"number": 22, "protocol": "[toUpper('tcp')]", "maxRequestAccessDuration": "PT3H"}},
					}}}},
			},
		}, importOptions{subscription: azureSub, resourceGroup: "rg"}, []string{azureSub + " rg northeurope p'1 " + vm("other-rg", "web-7")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.in)
			ps, err := parseAzurePolicies(b, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, show(ps)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if tc.name == "template" && ps[0].VMs[0].Ports[0].Protocol != "TCP" {
				t.Errorf("protocol %q", ps[0].VMs[0].Ports[0].Protocol)
			}
		})
	}
}
