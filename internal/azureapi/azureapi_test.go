package azureapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/security/armsecurity"
	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

const (
	sub      = "00000000-0000-0000-0000-000000000001"
	otherSub = "00000000-0000-0000-0000-000000000002"
)

// staticToken is an azcore.TokenCredential that hands out an ajar token.
type staticToken string

func (s staticToken) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// queryPolicy sets query parameters on every request (for $top, or to
// send a wrong api-version).
type queryPolicy map[string]string

func (q queryPolicy) Do(req *policy.Request) (*http.Response, error) {
	u := req.Raw().URL
	v := u.Query()
	for k, val := range q {
		if k == "$top" && (req.Raw().Method != http.MethodGet || v.Get("$skipToken") != "") {
			continue
		}
		v.Set(k, val)
	}
	u.RawQuery = v.Encode()
	return req.Next()
}

// newClient returns the official SDK client pointed at ajard.
func newClient(t *testing.T, srv *ajardtest.Server, subscription, token string, q queryPolicy) *armsecurity.JitNetworkAccessPoliciesClient {
	t.Helper()
	o := &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{
				ActiveDirectoryAuthorityHost: "https://login.invalid/",
				Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
					cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.ajar.invalid"},
				},
			},
			InsecureAllowCredentialWithHTTP: true,
			Retry:                           policy.RetryOptions{MaxRetries: -1},
		},
		DisableRPRegistration: true,
	}
	if q != nil {
		o.PerCallPolicies = []policy.Policy{q}
	}
	c, err := armsecurity.NewJitNetworkAccessPoliciesClient(subscription, staticToken(token), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fixture is a server with VMs in two groups and a requester.
type fixture struct {
	srv   *ajardtest.Server
	admin *client.Client
	vms   map[string]jit.VM // by name
	alice string            // alice's token: requester in rg-a
}

func armVM(group, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/Microsoft.Compute/virtualMachines/" + name
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", sub, "--azure-location", "westeurope"}})
	f := &fixture{srv: srv, admin: srv.Admin, vms: map[string]jit.VM{}}
	ctx := t.Context()
	for _, g := range []string{"rg-a", "rg-b"} {
		if _, err := f.admin.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	azureVM := func(name, loc string) jit.NewVM {
		return jit.NewVM{Name: name, Group: "rg-a", Backend: jit.BackendAzure, OS: "linux", Addresses: []string{"10.0.0.4"},
			ExternalID: armVM("RG-A", name),
			Labels:     map[string]string{"azure.subscription": sub, "azure.resource-group": "RG-A", "azure.location": loc}}
	}
	for _, n := range []jit.NewVM{
		azureVM("web-1", "westeurope"),
		azureVM("db-1", "northeurope"),
		{Name: "web-2", Group: "rg-a", OS: "windows"},
		{Name: "web-3", Group: "rg-a"},
		{Name: "web-4", Group: "rg-a"},
		{Name: "app-1", Group: "rg-b"},
		{Name: "app-2", Group: "rg-b"},
	} {
		vm, err := f.admin.CreateVM(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		f.vms[vm.Name] = vm
	}
	if _, err := f.admin.CreateUser(ctx, jit.NewUser{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.CreateRoleBinding(ctx, "alice", jit.RoleRequester, "rg-a"); err != nil {
		t.Fatal(err)
	}
	tk, err := f.admin.CreateToken(ctx, jit.NewToken{User: "alice", Name: "sdk"})
	if err != nil {
		t.Fatal(err)
	}
	f.alice = tk.Secret
	return f
}

func rule(port int, proto armsecurity.Protocol, max string, prefixes ...string) *armsecurity.JitNetworkAccessPortRule {
	r := &armsecurity.JitNetworkAccessPortRule{Number: to.Ptr[int32](int32(port)), Protocol: to.Ptr(proto), MaxRequestAccessDuration: to.Ptr(max)}
	switch len(prefixes) {
	case 0:
	case 1:
		r.AllowedSourceAddressPrefix = to.Ptr(prefixes[0])
	default:
		r.AllowedSourceAddressPrefixes = to.SliceOfPtrs(prefixes...)
	}
	return r
}

func policyBody(vms ...*armsecurity.JitNetworkAccessPolicyVirtualMachine) armsecurity.JitNetworkAccessPolicy {
	return armsecurity.JitNetworkAccessPolicy{Kind: to.Ptr("Basic"), Properties: &armsecurity.JitNetworkAccessPolicyProperties{VirtualMachines: vms}}
}

func vmRules(id string, rules ...*armsecurity.JitNetworkAccessPortRule) *armsecurity.JitNetworkAccessPolicyVirtualMachine {
	return &armsecurity.JitNetworkAccessPolicyVirtualMachine{ID: to.Ptr(id), Ports: rules}
}

// wantError checks that err is an Azure error with the status and code.
func wantError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("%s: got %v, want an *azcore.ResponseError", what, err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("%s: got %d %s, want %d %s\n%v", what, re.StatusCode, re.ErrorCode, status, code, err)
	}
}

func names[T any](t *testing.T, next func() (T, bool, error), value func(T) []*armsecurity.JitNetworkAccessPolicy) ([]string, int) {
	t.Helper()
	var out []string
	n := 0
	for {
		page, more, err := next()
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return out, n
		}
		n++
		for _, p := range value(page) {
			out = append(out, *p.Name+"@"+strings.Split(*p.ID, "/")[4]+"/"+*p.Location)
		}
	}
}

func TestSDK(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	admin := newClient(t, f.srv, sub, ajardtest.AdminToken, queryPolicy{"$top": "2"})

	// Create: an Azure VM and an agent VM in one policy.
	web1, web2 := armVM("RG-A", "web-1"), armVM("rg-a", "web-2")
	created, err := admin.CreateOrUpdate(ctx, "RG-A", "westeurope", "default", policyBody(
		vmRules(web1, rule(22, armsecurity.ProtocolTCP, "PT3H", "*")),
		vmRules(web2, rule(22, armsecurity.ProtocolTCP, "PT3H"), rule(3389, armsecurity.ProtocolTCP, "PT1H", "10.0.0.0/8", "192.168.1.0/24")),
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := created.JitNetworkAccessPolicy
	wantID := "/subscriptions/" + sub + "/resourceGroups/RG-A/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
	if *p.ID != wantID || *p.Name != "default" || *p.Type != "Microsoft.Security/locations/jitNetworkAccessPolicies" ||
		*p.Location != "westeurope" || *p.Kind != "Basic" || *p.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("created policy: id %s name %s type %s location %s kind %s state %s", *p.ID, *p.Name, *p.Type, *p.Location, *p.Kind, *p.Properties.ProvisioningState)
	}
	type port struct {
		Number   int32
		Protocol armsecurity.Protocol
		Prefix   string
		Prefixes []string
		Max      string
	}
	ports := func(p armsecurity.JitNetworkAccessPolicy) map[string][]port {
		out := map[string][]port{}
		for _, v := range p.Properties.VirtualMachines {
			for _, r := range v.Ports {
				pp := port{Number: *r.Number, Protocol: *r.Protocol, Max: *r.MaxRequestAccessDuration}
				if r.AllowedSourceAddressPrefix != nil {
					pp.Prefix = *r.AllowedSourceAddressPrefix
				}
				for _, s := range r.AllowedSourceAddressPrefixes {
					pp.Prefixes = append(pp.Prefixes, *s)
				}
				out[*v.ID] = append(out[*v.ID], pp)
			}
		}
		return out
	}
	wantPorts := map[string][]port{
		web1: {{22, "TCP", "*", nil, "PT3H"}},
		web2: {{22, "TCP", "*", nil, "PT3H"}, {3389, "TCP", "", []string{"10.0.0.0/8", "192.168.1.0/24"}, "PT1H"}},
	}
	if d := cmp.Diff(wantPorts, ports(p)); d != "" {
		t.Fatalf("created policy ports (-want +got):\n%s", d)
	}

	// Read it back, through Azure's API and ajar's own.
	got, err := admin.Get(ctx, "rg-a", "WestEurope", "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got.ID != wantID {
		t.Fatalf("get: id %s", *got.ID)
	}
	if d := cmp.Diff(wantPorts, ports(got.JitNetworkAccessPolicy)); d != "" {
		t.Fatalf("get ports (-want +got):\n%s", d)
	}
	pol, err := f.admin.GetPolicy(ctx, f.vms["web-2"].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Ports) != 2 || pol.Ports[1].Number != 3389 || pol.Ports[1].MaxRequestAccessDuration != "PT1H" {
		t.Fatalf("ajar's view of web-2's policy: %+v", pol)
	}

	// More policies, so that every list scope spans several pages of 2.
	for _, c := range []struct{ rg, loc, name, vm string }{
		{"rg-a", "westeurope", "p2", armVM("rg-a", "web-3")},
		{"rg-a", "westeurope", "p3", armVM("rg-a", "web-4")},
		{"rg-a", "northeurope", "p4", armVM("RG-A", "db-1")},
		{"rg-b", "westeurope", "default", armVM("rg-b", "app-1")},
		{"rg-b", "eastus", "p5", armVM("rg-b", "app-2")},
	} {
		if _, err := admin.CreateOrUpdate(ctx, c.rg, c.loc, c.name, policyBody(vmRules(c.vm, rule(22, armsecurity.ProtocolAll, "PT2H"))), nil); err != nil {
			t.Fatalf("create %s/%s/%s: %v", c.rg, c.loc, c.name, err)
		}
	}
	all := []string{"default@RG-A/westeurope", "p2@rg-a/westeurope", "p3@rg-a/westeurope", "p4@RG-A/northeurope", "default@rg-b/westeurope", "p5@rg-b/eastus"}
	pick := func(keep func(string) bool) []string {
		var out []string
		for _, n := range all {
			if keep(n) {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	check := func(scope string, got []string, pages int, want []string) {
		t.Helper()
		slices.Sort(got)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("list %s (-want +got):\n%s", scope, d)
		}
		if wantPages := (len(want) + 1) / 2; pages != wantPages {
			t.Errorf("list %s: %d pages, want %d", scope, pages, wantPages)
		}
	}
	{
		pg := admin.NewListPager(nil)
		got, n := names(t, func() (armsecurity.JitNetworkAccessPoliciesClientListResponse, bool, error) {
			if !pg.More() {
				return armsecurity.JitNetworkAccessPoliciesClientListResponse{}, false, nil
			}
			r, err := pg.NextPage(ctx)
			return r, true, err
		}, func(r armsecurity.JitNetworkAccessPoliciesClientListResponse) []*armsecurity.JitNetworkAccessPolicy {
			return r.Value
		})
		check("subscription", got, n, pick(func(string) bool { return true }))
	}
	{
		pg := admin.NewListByRegionPager("westeurope", nil)
		got, n := names(t, func() (armsecurity.JitNetworkAccessPoliciesClientListByRegionResponse, bool, error) {
			if !pg.More() {
				return armsecurity.JitNetworkAccessPoliciesClientListByRegionResponse{}, false, nil
			}
			r, err := pg.NextPage(ctx)
			return r, true, err
		}, func(r armsecurity.JitNetworkAccessPoliciesClientListByRegionResponse) []*armsecurity.JitNetworkAccessPolicy {
			return r.Value
		})
		check("location", got, n, pick(func(s string) bool { return strings.HasSuffix(s, "/westeurope") }))
	}
	{
		pg := admin.NewListByResourceGroupPager("RG-A", nil)
		got, n := names(t, func() (armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupResponse, bool, error) {
			if !pg.More() {
				return armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupResponse{}, false, nil
			}
			r, err := pg.NextPage(ctx)
			return r, true, err
		}, func(r armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupResponse) []*armsecurity.JitNetworkAccessPolicy {
			return r.Value
		})
		check("resource group", got, n, pick(func(s string) bool { return strings.Contains(strings.ToLower(s), "@rg-a/") }))
	}
	{
		pg := admin.NewListByResourceGroupAndRegionPager("rg-a", "westeurope", nil)
		got, n := names(t, func() (armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupAndRegionResponse, bool, error) {
			if !pg.More() {
				return armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupAndRegionResponse{}, false, nil
			}
			r, err := pg.NextPage(ctx)
			return r, true, err
		}, func(r armsecurity.JitNetworkAccessPoliciesClientListByResourceGroupAndRegionResponse) []*armsecurity.JitNetworkAccessPolicy {
			return r.Value
		})
		check("resource group and location", got, n, pick(func(s string) bool {
			return strings.Contains(strings.ToLower(s), "@rg-a/") && strings.HasSuffix(s, "/westeurope")
		}))
	}

	// Initiate as alice, from her own address (the caller's, as in Azure).
	alice := newClient(t, f.srv, sub, f.alice, nil)
	initiate := func(c *armsecurity.JitNetworkAccessPoliciesClient, vm string, port int, end time.Time, source string) (armsecurity.JitNetworkAccessPoliciesClientInitiateResponse, error) {
		pp := &armsecurity.JitNetworkAccessPolicyInitiatePort{Number: to.Ptr(int32(port)), EndTimeUTC: to.Ptr(end)}
		if source != "" {
			pp.AllowedSourceAddressPrefix = to.Ptr(source)
		}
		return c.Initiate(ctx, "rg-a", "westeurope", "default", armsecurity.JitNetworkAccessPolicyInitiateRequest{
			Justification:   to.Ptr("deploy"),
			VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: to.Ptr(vm), Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{pp}}},
		}, nil)
	}
	end := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	ir, err := initiate(alice, web2, 22, end, "")
	if err != nil {
		t.Fatal(err)
	}
	if *ir.Requestor != "alice" || *ir.Justification != "deploy" || len(ir.VirtualMachines) != 1 || *ir.VirtualMachines[0].ID != web2 {
		t.Fatalf("initiate answered %+v", ir.JitNetworkAccessRequest)
	}
	ip := ir.VirtualMachines[0].Ports[0]
	if *ip.Number != 22 || *ip.AllowedSourceAddressPrefix != "127.0.0.1" || !ip.EndTimeUTC.Equal(end) ||
		*ip.Status != armsecurity.StatusInitiated || *ip.StatusReason != armsecurity.StatusReasonUserRequested {
		t.Fatalf("initiated port: number %d source %s end %s status %s/%s", *ip.Number, *ip.AllowedSourceAddressPrefix, ip.EndTimeUTC, *ip.Status, *ip.StatusReason)
	}
	grants, err := f.admin.ListGrants(ctx, f.vms["web-2"].ID, jit.GrantActive, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 1 || grants[0].Port != 22 || grants[0].Source != "127.0.0.1/32" || grants[0].User != "alice" || !grants[0].EndTime.Equal(end) {
		t.Fatalf("grants after initiate: %+v", grants)
	}
	first := grants[0]

	// A second request for the same port and source supersedes the first;
	// then an admin revokes the second through ajar's API.
	if _, err := initiate(alice, web2, 22, end.Add(-time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	active, err := f.admin.ListGrants(ctx, f.vms["web-2"].ID, jit.GrantActive, "")
	if err != nil || len(active) != 1 {
		t.Fatalf("active grants: %v %+v", err, active)
	}
	if _, err := f.admin.Revoke(ctx, active[0].ID); err != nil {
		t.Fatal(err)
	}
	got, err = alice.Get(ctx, "rg-a", "westeurope", "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	type histPort struct {
		VM, Requestor, Source, Status, Reason string
		Port                                  int32
	}
	var hist []histPort
	for _, r := range got.Properties.Requests {
		for _, v := range r.VirtualMachines {
			for _, p := range v.Ports {
				hist = append(hist, histPort{*v.ID, *r.Requestor, *p.AllowedSourceAddressPrefix, string(*p.Status), string(*p.StatusReason), *p.Number})
			}
		}
	}
	wantHist := []histPort{
		{web2, "alice", "127.0.0.1", "Revoked", "UserRequested", 22},         // the second, revoked
		{web2, "alice", "127.0.0.1", "Revoked", "NewerRequestInitiated", 22}, // the first, superseded
	}
	if d := cmp.Diff(wantHist, hist); d != "" {
		t.Fatalf("policy requests (-want +got):\n%s", d)
	}
	if r := got.Properties.Requests[1]; !r.StartTimeUTC.Equal(first.StartTime.Truncate(time.Second)) && r.StartTimeUTC.Sub(first.StartTime).Abs() > time.Second {
		t.Errorf("first request's start time %s, grant started %s", r.StartTimeUTC, first.StartTime)
	}

	// Refusals, as Azure-shaped errors the SDK parses.
	_, err = initiate(alice, web1, 3389, end, "")
	wantError(t, "port not in the policy", err, 400, "BadRequest")
	_, err = initiate(alice, web2, 3389, time.Now().Add(2*time.Hour), "10.1.2.3")
	wantError(t, "source other than the caller's, for a requester", err, 403, "AuthorizationFailed")
	_, err = initiate(admin, web2, 3389, time.Now().Add(2*time.Hour), "10.1.2.3")
	wantError(t, "duration over the maximum", err, 400, "BadRequest")
	_, err = initiate(admin, web2, 3389, time.Now().Add(30*time.Minute), "172.16.0.1")
	wantError(t, "source outside the allowed prefixes", err, 400, "BadRequest")
	_, err = initiate(admin, armVM("rg-a", "web-3"), 22, end, "")
	wantError(t, "VM of another policy", err, 400, "BadRequest")
	_, err = admin.Get(ctx, "rg-nope", "westeurope", "default", nil)
	wantError(t, "unknown resource group", err, 404, "ResourceGroupNotFound")
	_, err = admin.Get(ctx, "rg-a", "westeurope", "nope", nil)
	wantError(t, "unknown policy", err, 404, "NotFound")
	_, err = newClient(t, f.srv, sub, ajardtest.AdminToken, queryPolicy{"api-version": "2015-06-01-preview"}).Get(ctx, "rg-a", "westeurope", "default", nil)
	wantError(t, "bad api-version", err, 400, "InvalidApiVersionParameter")
	_, err = newClient(t, f.srv, otherSub, ajardtest.AdminToken, nil).Get(ctx, "rg-a", "westeurope", "default", nil)
	wantError(t, "unknown subscription", err, 404, "SubscriptionNotFound")
	_, err = newClient(t, f.srv, sub, "ajar_not-a-real-token-000000000000", nil).Get(ctx, "rg-a", "westeurope", "default", nil)
	wantError(t, "bad token", err, 401, "AuthenticationFailed")
	_, err = alice.CreateOrUpdate(ctx, "rg-a", "westeurope", "p9", policyBody(vmRules(armVM("rg-a", "web-2"), rule(22, "TCP", "PT1H"))), nil)
	wantError(t, "requester changing a policy", err, 403, "AuthorizationFailed")
	_, err = admin.CreateOrUpdate(ctx, "rg-a", "westeurope", "p9", policyBody(vmRules(armVM("rg-a", "web-3"), rule(22, "TCP", "PT1H"))), nil)
	wantError(t, "VM of another policy", err, 409, "Conflict")
	_, err = admin.CreateOrUpdate(ctx, "rg-a", "westeurope", "p9", policyBody(vmRules(armVM("rg-a", "nope"), rule(22, "TCP", "PT1H"))), nil)
	wantError(t, "unknown VM", err, 400, "BadRequest")
	_, err = admin.CreateOrUpdate(ctx, "rg-a", "eastus", "p9", policyBody(vmRules(web1, rule(22, "TCP", "PT1H"))), nil)
	wantError(t, "Azure VM in another location", err, 400, "BadRequest")
	_, err = admin.CreateOrUpdate(ctx, "rg-a", "westeurope", "p9", policyBody(vmRules(armVM("rg-a", "web-4"), rule(22, "TCP", "PT48H"))), nil)
	wantError(t, "maximum duration over a day", err, 400, "BadRequest")

	// Replacing the policy without web-2 disables JIT on web-2.
	if _, err := admin.CreateOrUpdate(ctx, "rg-a", "westeurope", "default", policyBody(vmRules(web1, rule(22, armsecurity.ProtocolTCP, "PT3H", "*"))), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.GetPolicy(ctx, f.vms["web-2"].ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("web-2's policy after it left the Azure policy: %v", err)
	}

	// Delete: 200, then 204 when it is gone.
	var raw *http.Response
	dctx := runtime.WithCaptureResponse(ctx, &raw)
	if _, err := admin.Delete(dctx, "rg-a", "westeurope", "p2", nil); err != nil || raw.StatusCode != 200 {
		t.Fatalf("delete: %v", err)
	}
	if _, err := admin.Delete(dctx, "rg-a", "westeurope", "p2", nil); err != nil || raw.StatusCode != 204 {
		t.Fatalf("delete again: %v (status %d)", err, raw.StatusCode)
	}
	if _, err := f.admin.GetPolicy(ctx, f.vms["web-3"].ID); jit.ErrorCode(err) != jit.ENotFound {
		t.Fatalf("web-3's policy after delete: %v", err)
	}
	_, err = admin.Get(ctx, "rg-a", "westeurope", "p2", nil)
	wantError(t, "deleted policy", err, 404, "NotFound")

	// Both APIs write the same activity log.
	evs, err := f.admin.ListEvents(ctx, client.EventQuery{VM: f.vms["web-3"].ID})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range evs {
		ops = append(ops, e.Operation+"/"+e.Outcome)
		if e.Operation == jit.OpPolicyCreate && !strings.Contains(string(e.Details), `"azurePolicy"`) {
			t.Errorf("policy.create details do not name the Azure policy: %s", e.Details)
		}
	}
	for _, want := range []string{"vm.create/success", "policy.create/success", "policy.delete/success"} {
		if !slices.Contains(ops, want) {
			t.Errorf("activity of web-3: %v, want %s", ops, want)
		}
	}
	evs, err = f.admin.ListEvents(ctx, client.EventQuery{Operation: jit.OpRequestRefuse})
	if err != nil || len(evs) == 0 {
		t.Errorf("refused requests are not in the activity log: %v %d", err, len(evs))
	}
}

// rawCall sends a REST call without the SDK.
func rawCall(t *testing.T, srv *ajardtest.Server, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestREST covers what the SDK's models cannot send: an initiate with a
// duration and several source prefixes, case-insensitive paths, and the
// raw error bodies.
func TestREST(t *testing.T) {
	f := setup(t)
	base := "/subscriptions/" + sub + "/resourceGroups/rg-a/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
	q := "?api-version=2020-01-01"
	web4 := armVM("rg-a", "web-4")
	st, b := rawCall(t, f.srv, ajardtest.AdminToken, "PUT", base+q, map[string]any{"properties": map[string]any{"virtualMachines": []any{
		map[string]any{"id": web4, "ports": []any{map[string]any{"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}}},
	}}})
	if st != 200 {
		t.Fatalf("PUT: %d %s", st, b)
	}
	st, b = rawCall(t, f.srv, ajardtest.AdminToken, "POST", strings.ToLower(base)+"/INITIATE"+q, map[string]any{
		"virtualMachines": []any{map[string]any{"id": strings.ToUpper(web4), "ports": []any{
			map[string]any{"number": 22, "duration": "PT30M", "allowedSourceAddressPrefixes": []string{"198.51.100.0/24", "2001:db8::1"}},
		}}},
	})
	if st != 202 {
		t.Fatalf("initiate: %d %s", st, b)
	}
	var ar struct {
		VirtualMachines []struct {
			ID    string
			Ports []struct {
				Number                       int
				AllowedSourceAddressPrefixes []string
				Status, StatusReason         string
				EndTimeUTC                   time.Time
			}
		}
		Requestor string
	}
	if err := json.Unmarshal(b, &ar); err != nil {
		t.Fatal(err)
	}
	if len(ar.VirtualMachines) != 1 || ar.VirtualMachines[0].ID != web4 || len(ar.VirtualMachines[0].Ports) != 1 {
		t.Fatalf("initiate answered %s", b)
	}
	p := ar.VirtualMachines[0].Ports[0]
	if d := cmp.Diff([]string{"198.51.100.0/24", "2001:db8::1"}, p.AllowedSourceAddressPrefixes); d != "" || p.Status != "Initiated" ||
		time.Until(p.EndTimeUTC) > 30*time.Minute || time.Until(p.EndTimeUTC) < 29*time.Minute {
		t.Fatalf("initiated port: %s", b)
	}
	grants, err := f.admin.ListGrants(t.Context(), f.vms["web-4"].ID, jit.GrantActive, "")
	if err != nil || len(grants) != 2 {
		t.Fatalf("grants: %v %+v", err, grants)
	}

	for _, c := range []struct {
		name, token, method, path string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "", "GET", base + q, nil, 401, "AuthenticationFailed"},
		{"no api-version", ajardtest.AdminToken, "GET", base, nil, 400, "MissingApiVersionParameter"},
		{"old api-version", ajardtest.AdminToken, "GET", base + "?api-version=2015-06-01-preview", nil, 400, "InvalidApiVersionParameter"},
		{"unknown route", ajardtest.AdminToken, "GET", "/subscriptions/" + sub + "/providers/Microsoft.Compute/virtualMachines" + q, nil, 404, "NotFound"},
		{"wrong method", ajardtest.AdminToken, "PATCH", base + q, nil, 405, "MethodNotAllowed"},
		{"bad JSON", ajardtest.AdminToken, "PUT", base + q, "{", 400, "InvalidRequestContent"},
		{"NUL in a body string", ajardtest.AdminToken, "PUT", base + q, `{"properties":{"virtualMachines":[{"id":"` + web4 + `\u0000","ports":[]}]}}`, 400, "InvalidRequestContent"},
		{"invalid UTF-8 in the path", ajardtest.AdminToken, "GET", strings.Replace(base, "rg-a", "rg-%FF", 1) + q, nil, 400, "BadRequest"},
		{"no properties", ajardtest.AdminToken, "PUT", base + q, map[string]any{}, 400, "BadRequest"},
		{"both prefix fields", ajardtest.AdminToken, "PUT", base + q, map[string]any{"properties": map[string]any{"virtualMachines": []any{
			map[string]any{"id": web4, "ports": []any{map[string]any{"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*",
				"allowedSourceAddressPrefixes": []string{"10.0.0.0/8"}, "maxRequestAccessDuration": "PT3H"}}}}}}, 400, "BadRequest"},
		{"bad $top", ajardtest.AdminToken, "GET", "/subscriptions/" + sub + "/providers/Microsoft.Security/jitNetworkAccessPolicies" + q + "&$top=0", nil, 400, "InvalidQueryParameterValue"},
		{"initiate, both end time and duration", ajardtest.AdminToken, "POST", base + "/initiate" + q, map[string]any{"virtualMachines": []any{
			map[string]any{"id": web4, "ports": []any{map[string]any{"number": 22, "duration": "PT5M", "endTimeUtc": time.Now().Add(time.Minute).Format(time.RFC3339)}}}}}, 400, "BadRequest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var st int
			var b []byte
			if s, ok := c.body.(string); ok {
				req, _ := http.NewRequestWithContext(t.Context(), c.method, f.srv.URL+c.path, strings.NewReader(s))
				req.Header.Set("Authorization", "Bearer "+c.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				st = resp.StatusCode
			} else {
				st, b = rawCall(t, f.srv, c.token, c.method, c.path, c.body)
			}
			var eb struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(b, &eb); err != nil || st != c.status || eb.Error.Code != c.code || eb.Error.Message == "" {
				t.Fatalf("got %d %s, want %d with code %s", st, b, c.status, c.code)
			}
		})
	}
}

// TestWithoutAzure: an operator with only agent VMs serves the API under
// a subscription id of their choosing, and ajard never turns to Azure.
func TestWithoutAzure(t *testing.T) {
	const own = "11111111-2222-3333-4444-555555555555"
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", own}})
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: "box-1", Group: "lab"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv, own, ajardtest.AdminToken, nil)
	vmID := "/subscriptions/" + own + "/resourceGroups/lab/providers/Microsoft.Compute/virtualMachines/box-1"
	if _, err := c.CreateOrUpdate(ctx, "lab", "westeurope", "default", policyBody(vmRules(vmID, rule(22, armsecurity.ProtocolTCP, "PT1H", "*"))), nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "lab", "westeurope", "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Properties.VirtualMachines) != 1 || *got.Properties.VirtualMachines[0].ID != vmID ||
		!strings.HasPrefix(*got.ID, "/subscriptions/"+own+"/") {
		t.Fatalf("policy served under %s: %s with VMs %v", own, *got.ID, got.Properties.VirtualMachines)
	}
	_, err = newClient(t, srv, sub, ajardtest.AdminToken, nil).Get(ctx, "lab", "westeurope", "default", nil)
	wantError(t, "a subscription not served", err, 404, "SubscriptionNotFound")
	if st, b := rawCall(t, srv, ajardtest.AdminToken, "POST", "/api/v1/azure/sync", nil); st != http.StatusNotFound {
		t.Errorf("POST /api/v1/azure/sync without Azure subscriptions: %d %s, want 404", st, b)
	}
	if log := srv.Log.String(); strings.Contains(log, "backend=azure") {
		t.Errorf("ajard started its Azure backend:\n%s", log)
	}
}

// TestPermissionBeforeExistence: as ARM, ajar checks that the caller may
// act on a scope before it says whether anything is there.
func TestPermissionBeforeExistence(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	if _, err := f.admin.CreateUser(ctx, jit.NewUser{Name: "rita"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.CreateRoleBinding(ctx, "rita", jit.RoleReader, "rg-a"); err != nil {
		t.Fatal(err)
	}
	tk, err := f.admin.CreateToken(ctx, jit.NewToken{User: "rita", Name: "sdk"})
	if err != nil {
		t.Fatal(err)
	}
	admin := newClient(t, f.srv, sub, ajardtest.AdminToken, nil)
	alice := newClient(t, f.srv, sub, f.alice, nil)
	rita := newClient(t, f.srv, sub, tk.Secret, nil)
	if _, err := admin.CreateOrUpdate(ctx, "rg-b", "westeurope", "default", policyBody(vmRules(armVM("rg-b", "app-1"), rule(22, "TCP", "PT1H"))), nil); err != nil {
		t.Fatal(err)
	}
	port22 := armsecurity.JitNetworkAccessPolicyInitiateRequest{VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{
		ID: to.Ptr(armVM("rg-a", "web-3")), Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: to.Ptr[int32](22), EndTimeUTC: to.Ptr(time.Now().Add(time.Hour))}}}}}

	var raw *http.Response
	_, err = alice.Delete(runtime.WithCaptureResponse(ctx, &raw), "rg-a", "westeurope", "nope", nil)
	wantError(t, "requester deleting a policy that does not exist", err, 403, "AuthorizationFailed")
	_, err = alice.CreateOrUpdate(ctx, "rg-a", "westeurope", "nope", policyBody(vmRules(armVM("rg-a", "no-such-vm"), rule(22, "TCP", "PT1H"))), nil)
	wantError(t, "requester creating a policy of a VM that does not exist", err, 403, "AuthorizationFailed")
	_, err = rita.Initiate(ctx, "rg-a", "westeurope", "nope", port22, nil)
	wantError(t, "reader initiating on a policy that does not exist", err, 403, "AuthorizationFailed")
	_, err = alice.Get(ctx, "rg-b", "westeurope", "default", nil)
	wantError(t, "requester reading a resource group of no binding of hers (the policy exists)", err, 403, "AuthorizationFailed")
	_, err = alice.Get(ctx, "rg-nope", "westeurope", "default", nil)
	wantError(t, "requester reading a resource group that does not exist", err, 403, "AuthorizationFailed")
	_, err = alice.NewListByResourceGroupPager("rg-b", nil).NextPage(ctx)
	wantError(t, "requester listing a resource group of no binding of hers", err, 403, "AuthorizationFailed")
	_, err = alice.Delete(ctx, "rg-b", "westeurope", "default", nil)
	wantError(t, "requester deleting in a resource group of no binding of hers", err, 403, "AuthorizationFailed")

	// Where the caller may act, existence is told.
	_, err = alice.Get(ctx, "rg-a", "westeurope", "nope", nil)
	wantError(t, "requester reading a policy that does not exist in her group", err, 404, "NotFound")
	_, err = alice.Initiate(ctx, "rg-a", "westeurope", "nope", port22, nil)
	wantError(t, "requester initiating on a policy that does not exist in her group", err, 404, "NotFound")
	_, err = admin.Get(ctx, "rg-nope", "westeurope", "default", nil)
	wantError(t, "admin reading a resource group that does not exist", err, 404, "ResourceGroupNotFound")
	if _, err := admin.Delete(runtime.WithCaptureResponse(ctx, &raw), "rg-a", "westeurope", "nope", nil); err != nil || raw.StatusCode != 204 {
		t.Errorf("admin deleting a policy that does not exist: %v", err)
	}
	if _, err := admin.Get(ctx, "rg-b", "westeurope", "default", nil); err != nil {
		t.Errorf("the refused delete changed something: %v", err)
	}
}

// TestRoundTrip: the Azure view shows port rules exactly as the client
// wrote them (declarative tools see no drift), while ajar validates and
// enforces their normalized form.
func TestRoundTrip(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	admin := newClient(t, f.srv, sub, ajardtest.AdminToken, nil)
	web3 := armVM("rg-a", "web-3")
	sent := []*armsecurity.JitNetworkAccessPortRule{
		rule(22, "tcp", "P1D", "192.168.0.3"),
		rule(3389, "Udp", "PT90M", "10.0.0.7/24", "2001:DB8::1/64"),
		{Number: to.Ptr[int32](5985), Protocol: to.Ptr(armsecurity.ProtocolAll), MaxRequestAccessDuration: to.Ptr("PT1H"),
			AllowedSourceAddressPrefixes: to.SliceOfPtrs("198.51.100.9")},
	}
	put, err := admin.CreateOrUpdate(ctx, "rg-a", "westeurope", "exact", policyBody(vmRules(web3, sent...)), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := admin.Get(ctx, "rg-a", "westeurope", "exact", nil)
	if err != nil {
		t.Fatal(err)
	}
	pg := admin.NewListByResourceGroupPager("rg-a", nil)
	listed, err := pg.NextPage(ctx)
	if err != nil || len(listed.Value) != 1 {
		t.Fatalf("list: %v %d", err, len(listed.Value))
	}
	for what, p := range map[string]armsecurity.JitNetworkAccessPolicy{"PUT": put.JitNetworkAccessPolicy, "GET": got.JitNetworkAccessPolicy, "list": *listed.Value[0]} {
		if d := cmp.Diff(vmRules(web3, sent...), p.Properties.VirtualMachines[0]); d != "" {
			t.Errorf("%s answered other port rules than were sent (-sent +answered):\n%s", what, d)
		}
	}

	// ajar validates and enforces the normalized form.
	pol, err := f.admin.GetPolicy(ctx, f.vms["web-3"].ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []jit.PortRule{
		{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"192.168.0.3/32"}, MaxRequestAccessDuration: "PT24H"},
		{Number: 3389, Protocol: "UDP", AllowedSourceAddressPrefixes: []string{"10.0.0.0/24", "2001:db8::/64"}, MaxRequestAccessDuration: "PT1H30M"},
		{Number: 5985, Protocol: "*", AllowedSourceAddressPrefixes: []string{"198.51.100.9/32"}, MaxRequestAccessDuration: "PT1H"},
	}
	if d := cmp.Diff(want, pol.Ports); d != "" {
		t.Errorf("ajar's policy (-want +got):\n%s", d)
	}

	// A change through ajar's own API is shown as ajar stored it.
	pol.Ports = pol.Ports[:1]
	pol.Ports[0].MaxRequestAccessDuration = "PT2H"
	if _, err := f.admin.PutPolicy(ctx, f.vms["web-3"].ID, pol); err != nil {
		t.Fatal(err)
	}
	got, err = admin.Get(ctx, "rg-a", "westeurope", "exact", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(vmRules(web3, rule(22, "TCP", "PT2H", "192.168.0.3/32")), got.Properties.VirtualMachines[0]); d != "" {
		t.Errorf("after a change through ajar's API (-want +got):\n%s", d)
	}
}

// TestPolicyHistory: a policy's requests are its own, not those of its
// VMs under an earlier policy.
func TestPolicyHistory(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	admin := newClient(t, f.srv, sub, ajardtest.AdminToken, nil)
	alice := newClient(t, f.srv, sub, f.alice, nil)
	web3 := armVM("rg-a", "web-3")
	initiate := func(name string) {
		t.Helper()
		if _, err := alice.Initiate(ctx, "rg-a", "westeurope", name, armsecurity.JitNetworkAccessPolicyInitiateRequest{
			VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: to.Ptr(web3),
				Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: to.Ptr[int32](22), EndTimeUTC: to.Ptr(time.Now().Add(time.Hour))}}}},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	requests := func(name string) int {
		t.Helper()
		p, err := admin.Get(ctx, "rg-a", "westeurope", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Properties.Requests)
	}
	put := func(name string) {
		t.Helper()
		if _, err := admin.CreateOrUpdate(ctx, "rg-a", "westeurope", name, policyBody(vmRules(web3, rule(22, armsecurity.ProtocolTCP, "PT3H", "*"))), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("first")
	initiate("first")
	initiate("first")
	if n := requests("first"); n != 2 {
		t.Fatalf("first policy: %d requests, want 2", n)
	}
	if _, err := admin.Delete(ctx, "rg-a", "westeurope", "first", nil); err != nil {
		t.Fatal(err)
	}
	put("second")
	if n := requests("second"); n != 0 {
		t.Errorf("a policy created after another was deleted shows %d requests, want none", n)
	}
	initiate("second")
	put("second") // an update keeps the history
	pol, err := f.admin.GetPolicy(ctx, f.vms["web-3"].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.PutPolicy(ctx, f.vms["web-3"].ID, pol); err != nil { // so does one through ajar's API
		t.Fatal(err)
	}
	if n := requests("second"); n != 1 {
		t.Errorf("second policy after updates: %d requests, want 1", n)
	}
	if _, err := admin.Delete(ctx, "rg-a", "westeurope", "second", nil); err != nil {
		t.Fatal(err)
	}
	put("second") // the same name again is a new policy
	if n := requests("second"); n != 0 {
		t.Errorf("a policy re-created under the same name shows %d requests, want none", n)
	}
}

// TestResourceGroupCase: Azure resource groups ignore case. ajar refuses
// a group whose name differs from another's only in case, and resolves a
// resource group case-insensitively; of groups that differ only in case
// from before, the exact spelling is meant, and any other is ambiguous.
func TestResourceGroupCase(t *testing.T) {
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--azure-api-subscription", sub}})
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "myRg1"); err != nil {
		t.Fatal(err)
	}
	_, err := srv.Admin.CreateGroup(ctx, "MYRG1")
	if jit.ErrorCode(err) != jit.EConflict || !strings.Contains(jit.ErrorMessage(err), "myRg1") {
		t.Fatalf("creating group MYRG1 next to myRg1: %v, want a conflict naming myRg1", err)
	}
	if _, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: "vm1", Group: "myRg1"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv, sub, ajardtest.AdminToken, nil)
	if _, err := c.CreateOrUpdate(ctx, "MYRG1", "westeurope", "default", policyBody(vmRules(armVM("MYRG1", "vm1"), rule(22, "TCP", "PT1H"))), nil); err != nil {
		t.Fatalf("policy through resource group MYRG1: %v", err)
	}
	if _, err := c.Get(ctx, "myrg1", "westeurope", "default", nil); err != nil {
		t.Fatalf("policy through resource group myrg1: %v", err)
	}

	// Groups that differ only in case, from before ajar refused them.
	srv.Stop()
	db, err := sqlite.Open(ctx, strings.TrimPrefix(srv.DB, "sqlite:"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx store.Tx) error { return tx.CreateGroup(jit.Group{Name: "MYRG1", CreatedAt: time.Now()}) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	c = newClient(t, srv, sub, ajardtest.AdminToken, nil)
	if _, err := c.Get(ctx, "myRg1", "westeurope", "default", nil); err != nil {
		t.Errorf("the exact spelling of one of two groups: %v", err)
	}
	_, err = c.Get(ctx, "myrg1", "westeurope", "default", nil)
	wantError(t, "a spelling of two groups", err, 409, "AmbiguousResourceGroup")
	if !strings.Contains(err.Error(), "MYRG1, myRg1") {
		t.Errorf("the ambiguity does not name both groups: %v", err)
	}
}
