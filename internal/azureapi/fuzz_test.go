package azureapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/azureapi"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// FuzzPutPolicy sends ARM JSON bodies to the policy PUT of a real handler
// over a real store and checks that no body makes it fail on its own
// side (5xx), and that an accepted policy reads back within the limits.
func FuzzPutPolicy(f *testing.F) {
	const vmID = "/subscriptions/" + sub + "/resourceGroups/prod/providers/Microsoft.Compute/virtualMachines/db-7"
	for _, s := range []string{
		`{"kind":"Basic","location":"westeurope","properties":{"virtualMachines":[{"id":"` + vmID + `","ports":[{"number":22,"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"}]}]}}`,
		`{"properties":{"virtualMachines":[{"id":"` + vmID + `","ports":[{"number":3389,"protocol":"*","allowedSourceAddressPrefixes":["198.51.100.0/24","2001:db8::/32"],"maxRequestAccessDuration":"P1D"}]}]}}`,
		`{"properties":{"virtualMachines":[{"id":"` + vmID + `","ports":[{"number":22,"protocol":"tcp","allowedSourceAddressPrefix":"Internet","maxRequestAccessDuration":"PTNaNS"}]}]}}`,
		`{"properties":{"virtualMachines":[]}}`, `{}`, `null`, `{"properties":null}`,
	} {
		f.Add([]byte(s))
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "ajar.db"), log)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	ctl := control.New(db, log, time.Now)
	secret, err := ctl.Bootstrap(ctx, "")
	if err != nil {
		f.Fatal(err)
	}
	admin, err := ctl.Authenticate(ctx, secret, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := ctl.CreateGroup(ctx, admin, "prod"); err != nil {
		f.Fatal(err)
	}
	if _, err := ctl.CreateVM(ctx, admin, jit.NewVM{Name: "db-7", Group: "prod"}); err != nil {
		f.Fatal(err)
	}
	h := azureapi.New(ctl, log, []string{sub}, "westeurope", func(*http.Request) netip.Addr { return netip.MustParseAddr("127.0.0.1") })
	const path = "/subscriptions/" + sub + "/resourceGroups/prod/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default?api-version=" + azureapi.APIVersion

	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPut, path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+secret)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("PUT %q = %d %s", body, w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			return
		}
		var p azureapi.Policy
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Properties == nil {
			t.Fatalf("PUT %q answered %s: %v", body, w.Body, err)
		}
		for _, v := range p.Properties.VirtualMachines {
			if len(v.Ports) > 64 {
				t.Fatalf("accepted %d ports", len(v.Ports))
			}
			for _, port := range v.Ports {
				if port.Number < 1 || port.Number > 65535 {
					t.Fatalf("accepted port %d", port.Number)
				}
			}
		}
	})
}
