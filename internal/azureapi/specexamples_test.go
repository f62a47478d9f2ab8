package azureapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// specCall sends a raw REST call with a JSON body and returns the status
// and the raw response body.
func specCall(t *testing.T, srv *ajardtest.Server, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+ajardtest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// sameShape reports where got lacks a field of want or holds a value of
// another JSON type; arrays in want give the shape of every element of
// got's, which must not be empty when want's is not.
func sameShape(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %T, want an object", path, got)}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, sameShape(path+"."+k, wv, gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %T, want an array", path, got)}
		}
		if len(w) > 0 && len(g) == 0 {
			return []string{path + ": empty"}
		}
		var out []string
		for i, gv := range g {
			if len(w) > 0 {
				out = append(out, sameShape(fmt.Sprintf("%s[%d]", path, i), w[0], gv)...)
			}
		}
		return out
	}
	if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
		return []string{fmt.Sprintf("%s: got %T %v, want %T", path, got, got, want)}
	}
	return nil
}

// checkShape checks a response body against a template of the example's
// response, written with this test's values.
func checkShape(t *testing.T, what string, body []byte, template string) map[string]any {
	t.Helper()
	var want, got map[string]any
	if err := json.Unmarshal([]byte(template), &want); err != nil {
		t.Fatalf("%s: template: %v", what, err)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: response is not a JSON object: %v\n%s", what, err, body)
	}
	for _, p := range sameShape(what, want, got) {
		t.Error(p)
	}
	return got
}

// TestSpecExamples exercises each operation of the REST API
// specification's examples for jitNetworkAccessPolicies at 2020-01-01
// (azure-rest-api-specs, specification/security/resource-manager/
// Microsoft.Security/stable/2020-01-01/examples/JitNetworkAccessPolicies):
// the requests take the examples' shapes, with this test's subscription,
// resource group and VM, and the responses must have the examples'
// fields, types and status codes.
func TestSpecExamples(t *testing.T) {
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", sub, "--azure-location", "westeurope"}})
	ctx := t.Context()
	// The examples' resource group is spelled in mixed case.
	if _, err := srv.Admin.CreateGroup(ctx, "myRg1"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: "vm1", Group: "myRg1"}); err != nil {
		t.Fatal(err)
	}
	vm := armVM("myRg1", "vm1")
	id := "/subscriptions/" + sub + "/resourceGroups/myRg1/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
	q := "?api-version=2020-01-01"
	rules := `[
		{"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
		{"number": 3389, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]`
	requestTemplate := `{
		"virtualMachines": [{"id": "` + vm + `", "ports": [{"number": 3389, "allowedSourceAddressPrefix": "192.0.2.2",
			"endTimeUtc": "2026-05-17T09:06:45.5691611Z", "status": "Initiated", "statusReason": "UserRequested"}]}],
		"startTimeUtc": "2026-05-17T08:06:45.5691611Z", "requestor": "admin", "justification": "testing a new version of the product"}`
	policyTemplate := func(requests string) string {
		r := ""
		if requests != "" {
			r = `"requests": [` + requests + `],`
		}
		return `{"kind": "Basic", "properties": {"virtualMachines": [{"id": "` + vm + `", "ports": ` + rules + `}], ` + r + `
			"provisioningState": "Succeeded"}, "id": "` + id + `", "name": "default",
			"type": "Microsoft.Security/locations/jitNetworkAccessPolicies", "location": "westeurope"}`
	}
	checkIDs := func(what string, p map[string]any) {
		t.Helper()
		if p["id"] != id || p["name"] != "default" || p["type"] != "Microsoft.Security/locations/jitNetworkAccessPolicies" ||
			p["location"] != "westeurope" || p["kind"] != "Basic" {
			t.Errorf("%s: got id %v name %v type %v location %v kind %v", what, p["id"], p["name"], p["type"], p["location"], p["kind"])
		}
	}

	// CreateJitNetworkAccessPolicy_example: PUT with kind, the VMs' port
	// rules, and requests (history, which a PUT does not create): 200.
	st, _, b := specCall(t, srv, "PUT", id+q, `{"kind": "Basic", "properties": {
		"virtualMachines": [{"id": "`+vm+`", "ports": `+rules+`}],
		"requests": [{"virtualMachines": [{"id": "`+vm+`", "ports": [{"number": 3389, "allowedSourceAddressPrefix": "192.0.2.2",
			"endTimeUtc": "2018-05-17T09:06:45.5691611Z", "status": "Initiated", "statusReason": "UserRequested"}]}],
			"startTimeUtc": "2018-05-17T08:06:45.5691611Z", "requestor": "barbara@contoso.com"}]}}`)
	if st != http.StatusOK {
		t.Fatalf("create: %d %s, want 200", st, b)
	}
	checkIDs("create", checkShape(t, "create", b, policyTemplate("")))
	if gs, err := srv.Admin.ListGrants(ctx, "", jit.GrantActive, ""); err != nil || len(gs) != 0 {
		t.Fatalf("the PUT's requests opened grants: %v %+v", err, gs)
	}

	// InitiateJitNetworkAccessPolicy_example: endTimeUtc with seven
	// fractional digits, one source address, a justification: 202.
	end := time.Now().Add(time.Hour).UTC().Truncate(100 * time.Nanosecond)
	st, _, b = specCall(t, srv, "POST", id+"/initiate"+q, `{"virtualMachines": [{"id": "`+vm+`", "ports": [{"number": 3389,
		"endTimeUtc": "`+end.Format("2006-01-02T15:04:05.0000000Z")+`", "allowedSourceAddressPrefix": "192.0.2.2"}]}],
		"justification": "testing a new version of the product"}`)
	if st != http.StatusAccepted {
		t.Fatalf("initiate: %d %s, want 202", st, b)
	}
	checkShape(t, "initiate", b, requestTemplate)
	var in accessRequestJSON
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	if len(in.VirtualMachines) != 1 || in.VirtualMachines[0].ID != vm || len(in.VirtualMachines[0].Ports) != 1 ||
		in.Justification != "testing a new version of the product" {
		t.Fatalf("initiate: %s", b)
	}
	if p := in.VirtualMachines[0].Ports[0]; p.Number != 3389 || p.AllowedSourceAddressPrefix != "192.0.2.2" || !p.EndTimeUTC.Equal(end) ||
		p.Status != "Initiated" || p.StatusReason != "UserRequested" {
		t.Errorf("initiate: port %+v, want 3389 from 192.0.2.2 until %v, Initiated, UserRequested", p, end)
	}

	// GetJitNetworkAccessPolicy_example: 200 with the request.
	st, _, b = specCall(t, srv, "GET", id+q, "")
	if st != http.StatusOK {
		t.Fatalf("get: %d %s, want 200", st, b)
	}
	checkIDs("get", checkShape(t, "get", b, policyTemplate(requestTemplate)))

	// The four lists (GetJitNetworkAccessPoliciesSubscription,
	// ...SubscriptionLocation, ...ResourceGroup, ...ResourceGroupLocation
	// examples): 200 and {"value": [policies]}.
	for _, path := range []string{
		"/subscriptions/" + sub + "/providers/Microsoft.Security/jitNetworkAccessPolicies",
		"/subscriptions/" + sub + "/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies",
		"/subscriptions/" + sub + "/resourceGroups/myRg1/providers/Microsoft.Security/jitNetworkAccessPolicies",
		"/subscriptions/" + sub + "/resourceGroups/myRg1/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies",
	} {
		st, _, b = specCall(t, srv, "GET", path+q, "")
		if st != http.StatusOK {
			t.Fatalf("list %s: %d %s, want 200", path, st, b)
		}
		l := checkShape(t, "list "+path, b, `{"value": [`+policyTemplate(requestTemplate)+`]}`)
		if v, _ := l["value"].([]any); len(v) != 1 {
			t.Errorf("list %s: %d policies, want 1", path, len(v))
		} else {
			checkIDs("list "+path, v[0].(map[string]any))
		}
	}

	// DeleteJitNetworkAccessPolicy_example: 200, then 204 as there is no
	// policy left; neither has a body.
	for _, want := range []int{http.StatusOK, http.StatusNoContent} {
		st, _, b = specCall(t, srv, "DELETE", id+q, "")
		if st != want || len(b) != 0 {
			t.Errorf("delete: %d %q, want %d and no body", st, b, want)
		}
	}
	if st, _, b = specCall(t, srv, "GET", id+q, ""); st != http.StatusNotFound {
		t.Errorf("get after delete: %d %s, want 404", st, b)
	}
}

// accessRequestJSON is the wire form of a JitNetworkAccessRequest as a
// client reads it.
type accessRequestJSON struct {
	VirtualMachines []struct {
		ID    string
		Ports []struct {
			Number                     int
			AllowedSourceAddressPrefix string
			EndTimeUTC                 time.Time
			Status, StatusReason       string
		}
	}
	StartTimeUTC  time.Time
	Requestor     string
	Justification string
}
