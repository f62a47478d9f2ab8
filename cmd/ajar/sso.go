package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"
)

// ssoWait is how long `ajar login --sso` waits for the browser.
const ssoWait = 5 * time.Minute

// ssoLogin signs in through the server's OpenID provider: the browser
// (or whoever opens the printed URL) signs in at the provider, and comes
// back to a one-time listener on loopback with a code that, with this
// process's verifier, the server trades for an API token.
func (a *app) ssoLogin(ctx context.Context, c config) (config, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return c, fmt.Errorf("listen on loopback for the browser: %w", err)
	}
	defer ln.Close()
	var b [32]byte
	rand.Read(b[:])
	verifier := base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(verifier))
	port := ln.Addr().(*net.TCPAddr).Port
	start := fmt.Sprintf("%s/signin/sso?cli=%d&challenge=%s&next=%%2Fmachines", c.Server, port, base64.RawURLEncoding.EncodeToString(sum[:]))

	codes := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		if r.URL.Path != "/callback" || code == "" {
			http.Error(w, "not the sign-in callback", http.StatusNotFound)
			return
		}
		select {
		case codes <- code:
			fmt.Fprintln(w, "Signed in to ajar. You can close this tab and go back to the terminal.")
		default:
			http.Error(w, "this sign-in is already done", http.StatusConflict)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	fmt.Fprintf(a.stderr, "Open this URL to sign in:\n\n    %s\n\n(On a machine whose browser cannot reach this one: ajar login --sso --device.)\n\n", start)
	if a.getenv("AJAR_BROWSER") != "none" {
		if err := exec.Command("xdg-open", start).Start(); err != nil {
			fmt.Fprintln(a.stderr, "(no browser could be opened; open the URL yourself)")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ssoWait)
	defer cancel()
	var code string
	select {
	case code = <-codes:
	case <-ctx.Done():
		return c, errors.New("no sign-in came back within 5 minutes; run ajar login --sso again")
	}
	cl, err := newClient(config{Server: c.Server, Fingerprint: c.Fingerprint})
	if err != nil {
		return c, err
	}
	tk, err := cl.SSOToken(ctx, code, verifier)
	if err != nil {
		return c, err
	}
	c.Token = tk.Secret
	return c, nil
}

// ssoDeviceLogin signs in through the server's OpenID provider with the
// device authorization grant: the person opens the provider's page on any
// device and types the code shown, while the server waits for the
// provider to say they did.
func (a *app) ssoDeviceLogin(ctx context.Context, c config) (config, error) {
	cl, err := newClient(config{Server: c.Server, Fingerprint: c.Fingerprint})
	if err != nil {
		return c, err
	}
	d, err := cl.SSODevice(ctx)
	if err != nil {
		return c, err
	}
	fmt.Fprintf(a.stderr, "On any device, open\n\n    %s\n\nand enter the code\n\n    %s\n\n", d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" {
		fmt.Fprintf(a.stderr, "(or open %s, which has the code in it)\n\n", d.VerificationURIComplete)
	}
	ctx, cancel := context.WithDeadline(ctx, d.ExpiresAt)
	defer cancel()
	for {
		tk, ok, err := cl.SSODeviceToken(ctx, d)
		switch {
		case ok:
			c.Token = tk.Secret
			return c, nil
		case ctx.Err() != nil:
			return c, errors.New("the code expired before the sign-in was approved; run ajar login --sso --device again")
		case err != nil:
			return c, err
		}
	}
}
