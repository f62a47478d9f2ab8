package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
)

// printSetupLink prints, while the user admin has no console password, a
// new one-time link that sets it: a new admin gets into the console from
// the startup message alone.
func printSetupLink(ctx context.Context, ctl *control.Control, stderr io.Writer, base string) error {
	secret, err := ctl.NewSetupSecret(ctx)
	if err != nil || secret == "" {
		return err
	}
	fmt.Fprintf(stderr, "\nTo sign in to the console, open this link and choose a password for %s\n(it works once, for %s; each start of ajard prints a new one until the password is set):\n\n    %s/setup/%s\n\n",
		control.SetupUser, control.SetupLifetime, base, secret)
	return nil
}

// publicURL returns the base URL of links ajard prints: --public-url, or
// the listening address (loopback for a wildcard one).
func publicURL(flag, scheme string, addr net.Addr) string {
	if flag != "" {
		return strings.TrimRight(flag, "/")
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
