package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
)

// cli runs the ajar command line against one test server, as one user.
type cli struct {
	t   *testing.T
	srv *ajardtest.Server
	env map[string]string
}

// newCLI starts a server and returns a CLI signed in as its admin through
// the environment. XDG_CONFIG_HOME points at a temporary folder so that no
// test reads or writes the real config.
func newCLI(t *testing.T) *cli {
	t.Helper()
	srv := ajardtest.Start(t, ajardtest.Options{})
	return &cli{t: t, srv: srv, env: map[string]string{
		"AJAR_SERVER":     srv.URL,
		"AJAR_TOKEN":      ajardtest.AdminToken,
		"XDG_CONFIG_HOME": t.TempDir(),
	}}
}

// as returns a CLI using another token on the same server.
func (c *cli) as(token string) *cli {
	env := map[string]string{}
	for k, v := range c.env {
		env[k] = v
	}
	env["AJAR_TOKEN"] = token
	return &cli{t: c.t, srv: c.srv, env: env}
}

// runIn runs ajar with stdin and returns what it printed.
func (c *cli) runIn(stdin string, args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return c.env[k] }
	err = run(ctx, args, getenv, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func (c *cli) run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	return c.runIn("", args...)
}

// must runs ajar and fails the test on an error.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("ajar %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// fails runs ajar, expects an error, and returns its text and stderr.
func (c *cli) fails(args ...string) (errText, stderr string) {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("ajar %s succeeded, want an error; stdout:\n%s", strings.Join(args, " "), out)
	}
	return err.Error(), errOut
}

// json runs ajar -o json and decodes its output into v.
func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out := c.must(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("ajar -o json %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// eventually retries f every 100ms until it returns true, failing the test
// after limit.
func eventually(t *testing.T, limit time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type valueList[T any] struct {
	Value []T `json:"value"`
}
