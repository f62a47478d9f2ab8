package azureapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/security/armsecurity"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/jit"
)

// TestSDKOverTLS drives the API with the Go SDK as a client outside a
// test would: over https (no InsecureAllowCredentialWithHTTP), trusting
// ajard's self-signed certificate, listing in pages of one so that the
// SDK follows ajard's nextLinks, which must stay https.
func TestSDKOverTLS(t *testing.T) {
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
	pem, err := os.ReadFile(filepath.Join(srv.Dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("tls.crt holds no certificate")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	c, err := armsecurity.NewJitNetworkAccessPoliciesClient(sub, staticToken(ajardtest.AdminToken), &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{
				ActiveDirectoryAuthorityHost: "https://login.invalid/",
				Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
					cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.ajar.invalid"},
				},
			},
			Transport:       hc,
			Retry:           policy.RetryOptions{MaxRetries: -1},
			PerCallPolicies: []policy.Policy{queryPolicy{"$top": "1"}},
		},
		DisableRPRegistration: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"web-1", "web-2"} {
		if _, err := c.CreateOrUpdate(ctx, "rg-a", "westeurope", n, policyBody(vmRules(armVM("rg-a", n), rule(22, armsecurity.ProtocolTCP, "PT1H"))), nil); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	want := []string{"web-1@rg-a/westeurope", "web-2@rg-a/westeurope"}
	p := c.NewListPager(nil)
	got, pages := names(t, func() (armsecurity.JitNetworkAccessPoliciesClientListResponse, bool, error) {
		if !p.More() {
			return armsecurity.JitNetworkAccessPoliciesClientListResponse{}, false, nil
		}
		r, err := p.NextPage(ctx)
		return r, err == nil, err
	}, func(r armsecurity.JitNetworkAccessPoliciesClientListResponse) []*armsecurity.JitNetworkAccessPolicy {
		return r.Value
	})
	if !slices.Equal(got, want) || pages != 2 {
		t.Errorf("list: got %q in %d pages, want %q in 2", got, pages, want)
	}
	r, err := c.Initiate(ctx, "rg-a", "westeurope", "web-1", armsecurity.JitNetworkAccessPolicyInitiateRequest{
		VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: to.Ptr(armVM("rg-a", "web-1")),
			Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: to.Ptr[int32](22), EndTimeUTC: to.Ptr(time.Now().Add(30 * time.Minute))}}}},
	}, nil)
	if err != nil {
		t.Fatalf("initiate: %v", err)
	}
	if ps := r.VirtualMachines[0].Ports; len(ps) != 1 || *ps[0].AllowedSourceAddressPrefix != "127.0.0.1" || *ps[0].Status != armsecurity.StatusInitiated {
		t.Errorf("initiate: got %+v", ps)
	}
	if _, err := c.Delete(ctx, "rg-a", "westeurope", "web-1", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
}
