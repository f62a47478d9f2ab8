package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad --oidc-* flags are refused with an error naming the flag.
func TestSSOFlags(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    ssoFlags
		want string // in the error; "" = accepted
	}{
		{ssoFlags{}, ""},
		{ssoFlags{clientID: "ajar"}, "--oidc-client-id: needs --oidc-issuer"},
		{ssoFlags{secretFile: secret}, "--oidc-client-secret-file: needs --oidc-issuer"},
		{ssoFlags{issuer: "login.example.com", clientID: "ajar", secretFile: secret}, "--oidc-issuer"},
		{ssoFlags{issuer: "https://login.example.com", secretFile: secret}, "--oidc-client-id"},
		{ssoFlags{issuer: "https://login.example.com", clientID: "ajar"}, "--oidc-client-secret-file"},
		{ssoFlags{issuer: "https://login.example.com", clientID: "ajar", secretFile: secret + ".missing"}, "--oidc-client-secret-file"},
		{ssoFlags{issuer: "https://login.example.com", clientID: "ajar", secretFile: secret, name: "Contoso"}, ""},
	} {
		p, err := tc.f.provider()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.f, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: err = %v, want one naming %s", tc.f, err, tc.want)
		case tc.want == "" && tc.f.issuer != "" && p.Name() != "Contoso":
			t.Errorf("%+v: name %q", tc.f, p.Name())
		}
	}
}
