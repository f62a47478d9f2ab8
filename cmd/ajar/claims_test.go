package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/sso/ssotest"
)

// ajar role map: a user of the provider gets exactly the roles their
// claims map to, and loses them at the sign-in after leaving the group.
func TestRoleMap(t *testing.T) {
	op := ssotest.Start(t, "olga")
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(ssotest.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ajardtest.Start(t, ajardtest.Options{Dir: dir, Args: []string{"--oidc-issuer", op.Issuer, "--oidc-client-id", ssotest.ClientID,
		"--oidc-client-secret-file", secret, "--oidc-scopes", "profile,email,groups"}})
	op.Allow(srv.URL + "/signin/sso/callback")
	c := &cli{t: t, srv: srv, env: map[string]string{"AJAR_SERVER": srv.URL, "AJAR_TOKEN": ajardtest.AdminToken, "XDG_CONFIG_HOME": t.TempDir()}}
	c.must("group", "add", "prod")

	if msg, _ := c.fails("role", "map", "--claim", "groups", "--role", "reader", "--group", "prod"); !strings.Contains(msg, "NAME=VALUE") {
		t.Errorf("--claim without a value: %s", msg)
	}
	if msg, _ := c.fails("role", "map", "--claim", "groups=ops", "--role", "overlord", "--group", "prod"); !strings.Contains(msg, "role") {
		t.Errorf("unknown role: %s", msg)
	}
	out := c.must("role", "map", "--claim", "groups=ops", "--role", "requester", "--group", "prod")
	if !strings.Contains(out, "groups claim holds ops") {
		t.Errorf("role map: %s", out)
	}
	c.must("role", "map", "--claim", "groups=auditors", "--role", "reader", "--group", "*")
	if out := c.must("role", "maps"); !strings.Contains(out, "ops") || !strings.Contains(out, "auditors") {
		t.Errorf("role maps:\n%s", out)
	}

	signIn := func() {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		resp := ssotest.SignIn(t, hc, srv.URL+"/signin/sso?next=/machines", "olga")
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/machines" {
			t.Fatalf("olga's sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
		}
	}
	op.SetGroups("olga", "ops", "auditors", "unmapped")
	signIn()
	out = c.must("role", "ls", "--user", "olga")
	if !strings.Contains(out, "requester") || !strings.Contains(out, "reader") || strings.Count(out, "olga") != 2 {
		t.Fatalf("olga's roles from her groups:\n%s", out)
	}

	op.SetGroups("olga", "auditors")
	signIn()
	out = c.must("role", "ls", "--user", "olga")
	if strings.Contains(out, "requester") || !strings.Contains(out, "reader") {
		t.Fatalf("olga's roles after leaving ops:\n%s", out)
	}
	if out := c.must("log", "--user", "olga"); !strings.Contains(out, "rolebinding.delete") {
		t.Errorf("no rolebinding.delete by olga's sign-in in the log:\n%s", out)
	}
}

// ajar login --sso: the URL it prints leads through the provider back to
// the CLI, which saves an API token of the user, as ajar login does.
func TestLoginSSO(t *testing.T) {
	op := ssotest.Start(t, "olga")
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(ssotest.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ajardtest.Start(t, ajardtest.Options{Dir: dir, Args: []string{"--oidc-issuer", op.Issuer, "--oidc-client-id", ssotest.ClientID,
		"--oidc-client-secret-file", secret}})
	op.Allow(srv.URL + "/signin/sso/callback")
	env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "AJAR_BROWSER": "none"}
	getenv := func(k string) string { return env[k] }

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"login", "--sso", "--server", srv.URL}, getenv, strings.NewReader(""), &out, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	start := ""
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, srv.URL+"/signin/sso?") {
			start = l
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if start == "" {
		t.Fatalf("ajar login --sso printed no URL; %v", <-done)
	}
	jar, _ := cookiejar.New(nil)
	resp := ssotest.SignIn(t, &http.Client{Jar: jar, Timeout: 30 * time.Second}, start, "olga")
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Hostname() != "127.0.0.1" || resp.Request.URL.Path != "/callback" {
		t.Fatalf("the browser ended at %s: %d", resp.Request.URL, resp.StatusCode)
	}
	if err := <-done; err != nil {
		t.Fatalf("ajar login --sso: %v", err)
	}
	if !strings.Contains(out.String(), "as olga") {
		t.Errorf("login said: %s", out.String())
	}
	c := &cli{t: t, srv: srv, env: map[string]string{"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]}}
	if who := c.must("whoami"); !strings.Contains(who, "olga") {
		t.Errorf("whoami with the saved login:\n%s", who)
	}
}

// ajar login --sso --device: the code it prints, approved at the
// provider's page on "another device", gets the CLI an API token of that
// user with the roles their groups map to; a denial gets nothing.
func TestLoginSSODevice(t *testing.T) {
	op := ssotest.Start(t, "dora", "dan")
	op.SetGroups("dora", "ops-admins")
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(ssotest.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ajardtest.Start(t, ajardtest.Options{Dir: dir, Args: []string{"--oidc-issuer", op.Issuer, "--oidc-client-id", ssotest.ClientID,
		"--oidc-client-secret-file", secret, "--oidc-scopes", "profile,email,groups"}})
	admin := &cli{t: t, srv: srv, env: map[string]string{"AJAR_SERVER": srv.URL, "AJAR_TOKEN": ajardtest.AdminToken, "XDG_CONFIG_HOME": t.TempDir()}}
	admin.must("group", "add", "prod")
	admin.must("role", "map", "--claim", "groups=ops-admins", "--role", "jit-admin", "--group", "prod")

	login := func(t *testing.T, user string, allow bool) (*cli, error, string) {
		env := map[string]string{"XDG_CONFIG_HOME": t.TempDir()}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pr, pw := io.Pipe()
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"login", "--sso", "--device", "--server", srv.URL}, func(k string) string { return env[k] }, strings.NewReader(""), &out, pw)
			pw.Close()
		}()
		sc := bufio.NewScanner(pr)
		uri, code, next := "", "", false
		for code == "" && sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			switch {
			case uri == "" && strings.HasPrefix(l, op.Issuer):
				uri = l
			case l == "and enter the code":
				next = true
			case next && l != "":
				code = l
			}
		}
		go io.Copy(io.Discard, pr)
		if uri == "" || code == "" {
			t.Fatalf("ajar login --sso --device printed no URL and code (%q %q); %v", uri, code, <-done)
		}
		jar, _ := cookiejar.New(nil)
		ssotest.ApproveDevice(t, &http.Client{Jar: jar, Timeout: 30 * time.Second}, uri, code, user, allow)
		err := <-done
		return &cli{t: t, srv: srv, env: env}, err, out.String()
	}
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		c, err, out := login(t, "dora", true)
		if err != nil {
			t.Fatalf("ajar login --sso --device: %v", err)
		}
		if !strings.Contains(out, "as dora") {
			t.Errorf("login said: %s", out)
		}
		if who := c.must("whoami"); !strings.Contains(who, "dora") || !strings.Contains(who, "jit-admin") || !strings.Contains(who, "prod") {
			t.Errorf("whoami with the saved login, want dora as jit-admin of prod:\n%s", who)
		}
	})
	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		_, err, _ := login(t, "dan", false)
		if err == nil || !strings.Contains(err.Error(), "denied") {
			t.Fatalf("a denied device sign-in: got %v, want an error saying it was denied", err)
		}
	})
}

// TestDeviceStartLimited checks that unauthenticated device sign-in
// starts, each a call to the provider, are limited per address: past the
// burst the answer is 429 with Retry-After, and the provider is not asked.
func TestDeviceStartLimited(t *testing.T) {
	op := ssotest.Start(t, "dora")
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(ssotest.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ajardtest.Start(t, ajardtest.Options{Dir: dir, Args: []string{"--oidc-issuer", op.Issuer, "--oidc-client-id", ssotest.ClientID,
		"--oidc-client-secret-file", secret}})
	for i := range control.DeviceStartBurst + 1 {
		resp, err := http.Post(srv.URL+"/api/v1/sso/device", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i < control.DeviceStartBurst {
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("device start %d: %d %s, want 200", i+1, resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many device sign-ins") {
			t.Fatalf("device start %d past the burst of %d: %d (Retry-After %q) %s, want 429 with Retry-After", i+1, control.DeviceStartBurst, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
}
