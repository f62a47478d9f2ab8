package azureapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	c := httpsClient(t, srv.URL, roots)
	pageInitiateDelete(t, c)
}

// pageInitiateDelete creates policies on web-1 and web-2 of rg-a, lists
// them in pages of one (the SDK follows nextLink only when it is https
// on the host it called), initiates on web-1 and deletes its policy.
func pageInitiateDelete(t *testing.T, c *armsecurity.JitNetworkAccessPoliciesClient) {
	t.Helper()
	ctx := t.Context()
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

// httpsClient is the Go SDK's JIT client for endpoint, trusting roots,
// listing in pages of one.
func httpsClient(t *testing.T, endpoint string, roots *x509.CertPool) *armsecurity.JitNetworkAccessPoliciesClient {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	c, err := armsecurity.NewJitNetworkAccessPoliciesClient(sub, staticToken(ajardtest.AdminToken), &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{
				ActiveDirectoryAuthorityHost: "https://login.invalid/",
				Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
					cloud.ResourceManager: {Endpoint: endpoint, Audience: "https://management.ajar.invalid"},
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
	return c
}

// TestSDKThroughTLSProxy puts ajard (plain HTTP) behind a TLS-terminating
// reverse proxy it trusts, as many deployments do: the nextLinks it builds
// must be https on the proxy's host, or the SDK's pager stops after the
// first page (it refuses to send its bearer token over http).
func TestSDKThroughTLSProxy(t *testing.T) {
	srv := ajardtest.Start(t, ajardtest.Options{Args: []string{"--trusted-proxies", "127.0.0.1/32", "--azure-api-subscription", sub, "--azure-location", "westeurope"}})
	if !strings.HasPrefix(srv.URL, "http://") {
		t.Fatalf("ajard serves %s, want plain http behind the proxy", srv.URL)
	}
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
	}})
	t.Cleanup(proxy.Close)
	ctx := t.Context()
	if _, err := srv.Admin.CreateGroup(ctx, "rg-a"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"web-1", "web-2"} {
		if _, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: n, Group: "rg-a"}); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(proxy.Certificate())
	pageInitiateDelete(t, httpsClient(t, proxy.URL, roots))
}
