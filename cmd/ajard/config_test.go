package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes a config file in a test's folder and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

// Flags win over AJAR_* variables, which win over the file, which wins over
// the defaults.
func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "ajard.toml", `
listen = "127.0.0.1:9000"
max-conns = 2_000
log-level = "warn"
trusted-proxies = ["192.0.2.0/24", "198.51.100.7"]
shutdown-timeout = "3s"
`)
	c, err := parseConfig([]string{"--config", file, "--listen", "127.0.0.1:9999"}, envOf("AJAR_MAX_CONNS", "3000"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:9999" || c.limits.maxConns != 3000 || c.logLevel != "warn" || c.shutdownTimeout != 3*time.Second || len(c.trustedProxies) != 2 {
		t.Errorf("listen %q (flag), max-conns %d (env), log-level %q (file), shutdown-timeout %s (file), proxies %v (file)",
			c.listen, c.limits.maxConns, c.logLevel, c.shutdownTimeout, c.trustedProxies)
	}
	if c.azureLocation != "westeurope" || c.limits.idleTimeout != 2*time.Minute {
		t.Errorf("defaults lost: azure-location %q, idle-timeout %s", c.azureLocation, c.limits.idleTimeout)
	}
	// AJAR_CONFIG names the file when --config does not; --config "" reads none.
	c, err = parseConfig(nil, envOf("AJAR_CONFIG", file), io.Discard)
	if err != nil || c.listen != "127.0.0.1:9000" {
		t.Errorf("AJAR_CONFIG: %v, listen %q", err, c.listen)
	}
	c, err = parseConfig([]string{"--config="}, envOf("AJAR_CONFIG", file), io.Discard)
	if err != nil || c.listen != "127.0.0.1:8080" {
		t.Errorf(`--config "": %v, listen %q`, err, c.listen)
	}
}

// A bad file is refused with its name, the line and the key; nothing else
// is read from it.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		env        []string
		want       string
	}{
		{"unknown key", "listen = \"127.0.0.1:1\"\nmax-con = 5\n", nil, ":2: max-con: unknown key (did you mean max-conns?)"},
		{"not a number", "\n\nmax-conns = \"many\"\n", nil, `:3: max-conns: "many" is not a valid value`},
		{"out of range", "max-conns = 0\n", nil, ":1: max-conns: must be at least 1, got 0"},
		{"bad duration", "idle-timeout = \"2 minutes\"\n", nil, `:1: idle-timeout: "2 minutes" is not a valid value`},
		{"bad choice", "# TLS\ntls = \"on\"\n", nil, `:2: tls: must be off or auto, got "on"`},
		{"bad proxy", "trusted-proxies = [\"192.0.2.0/24\", \"proxy\"]\n", nil, `:1: trusted-proxies: "proxy" is not a CIDR or address`},
		{"bad log level", "log-level = \"loud\"\n", nil, `:1: log-level: "loud" is not debug`},
		{"bad db", "db = \"mysql://x\"\n", nil, `:1: db: "mysql://x" is not sqlite:PATH`},
		{"given twice", "tls = \"off\"\ntls = \"auto\"\n", nil, ":2: tls: given twice (first on line 1)"},
		{"table", "listen = \"127.0.0.1:1\"\n[server]\nlisten = \"x\"\n", nil, ":2: tables are not used"},
		{"dotted key", "oidc.issuer = \"https://login.example.com\"\n", nil, ":1: oidc.issuer: dotted keys are not used"},
		{"syntax", "listen = \"127.0.0.1:1\"\nmax-conns = \n", nil, ":2: "},
		{"not a flag of the file", "version = true\n", nil, ":1: version: unknown key"},
		{"wrong kind", "max-conns = 1.5\n", nil, ":1: max-conns: a Float is not a value here"},
		{"secret file missing", "oidc-issuer = \"https://login.example.com\"\noidc-client-id = \"ajar\"\noidc-client-secret-file = \"/nonexistent/secret\"\n", nil, ":3: oidc-client-secret-file: open /nonexistent/secret"},
		{"certificate missing", "tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n", nil, ":1: tls-cert: open /nonexistent/cert.pem"},
		{"env over a good file", "max-conns = 5\n", []string{"AJAR_MAX_CONNS", "-1"}, "AJAR_MAX_CONNS (--max-conns): must be at least 1, got -1"},
		{"env not a number", "", []string{"AJAR_BODY_TIMEOUT", "soon"}, `AJAR_BODY_TIMEOUT (--body-timeout): "soon" is not a valid value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "ajard.toml", tc.text)
			var out bytes.Buffer
			err := run(t.Context(), []string{"config", "check", file}, envOf(), &out, io.Discard)
			if tc.env != nil { // config check reads the file alone; ajard reads the environment too
				if err != nil {
					t.Fatalf("config check: %v", err)
				}
				err = run(t.Context(), []string{"--config", file}, envOf(tc.env...), &out, io.Discard)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if tc.env == nil && !strings.HasPrefix(err.Error(), file+":") {
				t.Errorf("%v: does not start with the file's name", err)
			}
		})
	}
}

// ajard config check accepts a good file, and the file the packages ship.
func TestConfigCheck(t *testing.T) {
	secret := writeFile(t, "secret", "s3cret\n")
	file := writeFile(t, "ajard.toml", `oidc-issuer = "https://login.example.com"
oidc-client-id = "ajar"
oidc-client-secret-file = "`+secret+`"
azure-sync-interval = "10m"
max-header-bytes = 0x10000
`)
	for _, f := range []string{file, filepath.Join("..", "..", "deploy", "ajard.toml")} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"config", "check", f}, envOf(), &out, io.Discard); err != nil {
			t.Errorf("config check %s: %v", f, err)
		} else if out.String() != f+": ok\n" {
			t.Errorf("config check %s printed %q", f, out.String())
		}
	}
	if err := run(t.Context(), []string{"config", "check", file + ".missing"}, envOf(), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing file: %v", err)
	}
}

// Secrets come from files: the database URL and the first admin's token.
func TestConfigSecretFiles(t *testing.T) {
	dsn := writeFile(t, "dsn", "postgres://ajar:s3cret@127.0.0.1:5432/ajar\n")
	c, err := parseConfig([]string{"--config=", "--db-file", dsn}, envOf(), io.Discard)
	if err != nil || c.db != "postgres://ajar:s3cret@127.0.0.1:5432/ajar" {
		t.Errorf("--db-file: %v, db %q", err, c.db)
	}
	_, err = parseConfig([]string{"--config=", "--db-file", dsn, "--db", "sqlite:x.db"}, envOf(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--db-file: --db and --db-file exclude each other") {
		t.Errorf("--db with --db-file: %v", err)
	}
	bad := writeFile(t, "dsn", "mysql://ajar:s3cret@db/ajar\n")
	_, err = parseConfig([]string{"--config=", "--db-file", bad}, envOf(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--db-file") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a bad --db-file: %v, want an error naming the flag without the password", err)
	}
}

// deploy/ajard.toml is what "ajard config example" prints, and the README
// describes every key.
func TestConfigExampleInSync(t *testing.T) {
	var b bytes.Buffer
	if err := writeExample(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "deploy", "ajard.toml")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Errorf("%s is out of date: go run ./cmd/ajard config example > deploy/ajard.toml", path)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var c config
	n := 0
	newFlagSet(&c, io.Discard).VisitAll(func(f *flag.Flag) {
		if notInFile[f.Name] {
			return
		}
		n++
		if !bytes.Contains(readme, []byte("| `"+f.Name+"` |")) {
			t.Errorf("README.md has no row for the key %s", f.Name)
		}
	})
	if n < 30 {
		t.Errorf("only %d keys", n)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, envOf(), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "ajard ") || !strings.Contains(out.String(), "(commit ") {
		t.Errorf("ajard --version printed %q", out.String())
	}
}
