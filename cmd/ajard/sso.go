package main

import (
	"flag"
	"os"
	"strings"

	"github.com/ajarhq/ajar/internal/sso"
)

// ssoFlags are the --oidc-* flags: sign-in through an OpenID provider.
type ssoFlags struct {
	issuer, clientID, secretFile, scopes, name string
	usernameClaim, groupsClaim                 string
}

func (f *ssoFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.issuer, "oidc-issuer", "", "OpenID provider's issuer URL: adds \"Sign in with ...\" to the console and ajar login --sso")
	fs.StringVar(&f.clientID, "oidc-client-id", "", "client id registered at the provider")
	fs.StringVar(&f.secretFile, "oidc-client-secret-file", "", "file holding the client secret")
	fs.StringVar(&f.scopes, "oidc-scopes", "profile,email", "comma-separated scopes asked for besides openid")
	fs.StringVar(&f.name, "oidc-name", "single sign-on", "the provider's name on the sign-in button")
	fs.StringVar(&f.usernameClaim, "oidc-username-claim", "preferred_username", "ID token claim that names the ajar user")
	fs.StringVar(&f.groupsClaim, "oidc-groups-claim", "groups", "ID token claim that lists the user's groups, for role mappings")
}

// provider returns the configured provider, nil when --oidc-issuer is not
// set.
func (f *ssoFlags) provider() (*sso.Provider, error) {
	if f.issuer == "" {
		if f.clientID != "" {
			return nil, keyErrorf("oidc-client-id", "needs --oidc-issuer")
		}
		if f.secretFile != "" {
			return nil, keyErrorf("oidc-client-secret-file", "needs --oidc-issuer")
		}
		return nil, nil
	}
	cfg := sso.Config{Issuer: f.issuer, ClientID: f.clientID, Name: f.name, Scopes: splitList(f.scopes),
		UsernameClaim: f.usernameClaim, GroupsClaim: f.groupsClaim}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{}
	}
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, keyErrorf("oidc-client-secret-file", "%v", err)
		}
		cfg.ClientSecret = strings.TrimSpace(string(b))
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	return sso.New(cfg, nil), nil
}
