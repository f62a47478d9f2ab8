package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ajarhq/ajar/internal/sso"
)

// ssoFlags are the --oidc-* flags: sign-in through an OpenID provider.
type ssoFlags struct {
	issuer, clientID, secretFile, scopes, name string
	usernameClaim, groupsClaim                 string
}

func (f *ssoFlags) register(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&f.issuer, "oidc-issuer", env("AJAR_OIDC_ISSUER", ""), "OpenID provider's issuer URL: adds \"Sign in with ...\" to the console and ajar login --sso (env AJAR_OIDC_ISSUER)")
	fs.StringVar(&f.clientID, "oidc-client-id", env("AJAR_OIDC_CLIENT_ID", ""), "client id registered at the provider (env AJAR_OIDC_CLIENT_ID)")
	fs.StringVar(&f.secretFile, "oidc-client-secret-file", env("AJAR_OIDC_CLIENT_SECRET_FILE", ""), "file holding the client secret (env AJAR_OIDC_CLIENT_SECRET_FILE)")
	fs.StringVar(&f.scopes, "oidc-scopes", env("AJAR_OIDC_SCOPES", "profile,email"), "comma-separated scopes asked for besides openid")
	fs.StringVar(&f.name, "oidc-name", env("AJAR_OIDC_NAME", "single sign-on"), "the provider's name on the sign-in button")
	fs.StringVar(&f.usernameClaim, "oidc-username-claim", env("AJAR_OIDC_USERNAME_CLAIM", "preferred_username"), "ID token claim that names the ajar user")
	fs.StringVar(&f.groupsClaim, "oidc-groups-claim", env("AJAR_OIDC_GROUPS_CLAIM", "groups"), "ID token claim that lists the user's groups, for role mappings")
}

// provider returns the configured provider, nil when --oidc-issuer is not
// set.
func (f *ssoFlags) provider() (*sso.Provider, error) {
	if f.issuer == "" {
		if f.clientID != "" || f.secretFile != "" {
			return nil, fmt.Errorf("--oidc-client-id and --oidc-client-secret-file need --oidc-issuer")
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
			return nil, fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		cfg.ClientSecret = strings.TrimSpace(string(b))
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	return sso.New(cfg, nil), nil
}
