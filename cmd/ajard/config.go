package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// DefaultConfigFile is the config file ajard reads when it is present and
// neither --config nor AJAR_CONFIG names another.
const DefaultConfigFile = "/etc/ajar/ajard.toml"

// notInFile are the flags that are about the command, not the server: no
// config file key and no AJAR_* variable sets them.
var notInFile = map[string]bool{"config": true, "version": true, "ready-file": true}

// envName is the environment variable of a flag: AJAR_ and the flag's name
// in capitals with underscores (max-conns: AJAR_MAX_CONNS).
func envName(flagName string) string {
	return "AJAR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// A keyError is a bad setting: the flag (config key) it is about and what
// is wrong. parseConfig adds where the value came from.
type keyError struct {
	key, msg string
}

func keyErrorf(key, format string, args ...any) error {
	return &keyError{key: key, msg: fmt.Sprintf(format, args...)}
}

func (e *keyError) Error() string { return "--" + e.key + ": " + e.msg }

// sources says where each setting's value came from: the command line
// ("--name"), the environment (its variable) or the config file
// ("FILE:LINE"); absent means the default.
type sources map[string]string

// explain rewrites a keyError to name where the bad value came from.
func (s sources) explain(err error) error {
	var ke *keyError
	if !errors.As(err, &ke) {
		return err
	}
	switch from := s[ke.key]; {
	case strings.HasPrefix(from, "AJAR_"):
		return fmt.Errorf("%s (--%s): %s", from, ke.key, ke.msg)
	case from != "" && !strings.HasPrefix(from, "--"):
		return fmt.Errorf("%s: %s: %s", from, ke.key, ke.msg)
	}
	return err
}

// configFile returns the config file to read: --config, else AJAR_CONFIG,
// else DefaultConfigFile when it exists. --config "" means none.
func configFile(fs *flag.FlagSet, flagValue string, getenv func(string) string) string {
	if setOnCommandLine(fs)["config"] {
		return flagValue
	}
	if v := getenv("AJAR_CONFIG"); v != "" {
		return v
	}
	if _, err := os.Stat(DefaultConfigFile); err == nil {
		return DefaultConfigFile
	}
	return ""
}

// applySettings sets the flags of fs from a config file, then from the
// environment, then from the command line again, so that the command line
// wins over the environment and the environment over the file. It returns
// where each value came from.
func applySettings(fs *flag.FlagSet, args []string, path string, getenv func(string) string) (sources, error) {
	from := sources{}
	if err := fs.Parse(args); err != nil {
		return from, err
	}
	onCommandLine := setOnCommandLine(fs)
	if path != "" {
		settings, err := readConfigFile(path)
		if err != nil {
			return from, err
		}
		for _, s := range settings {
			f := fs.Lookup(s.key)
			if f == nil || notInFile[s.key] {
				return from, fmt.Errorf("%s:%d: %s: unknown key%s", path, s.line, s.key, suggest(fs, s.key))
			}
			if err := fs.Set(s.key, s.value); err != nil {
				return from, fmt.Errorf("%s:%d: %s: %q is not a valid value: %v", path, s.line, s.key, s.value, unwrapFlagError(err))
			}
			from[s.key] = fmt.Sprintf("%s:%d", path, s.line)
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || notInFile[f.Name] {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s (--%s): %q is not a valid value: %v", name, f.Name, v, unwrapFlagError(serr))
			return
		}
		from[f.Name] = name
	})
	if err != nil {
		return from, err
	}
	if err := fs.Parse(args); err != nil {
		return from, err
	}
	for name := range onCommandLine {
		from[name] = "--" + name
	}
	return from, nil
}

// setOnCommandLine returns the flags args set.
func setOnCommandLine(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// unwrapFlagError drops the flag package's "parse error" wording for the
// strconv error's own.
func unwrapFlagError(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// suggest names the flag a mistyped key probably meant.
func suggest(fs *flag.FlagSet, key string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if notInFile[f.Name] {
			return
		}
		if d := editDistance(key, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" {
		return " (every key is a flag name of ajard; see deploy/ajard.toml)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// PackagedSettings are the settings the packages' /etc/ajar/ajard.toml
// makes (deploy/ajard.toml): the service's data folder, all interfaces
// with a self-signed certificate, connections for many agents.
var PackagedSettings = map[string]string{
	"db":        "sqlite:/var/lib/ajar/ajar.db",
	"data-dir":  "/var/lib/ajar",
	"listen":    "0.0.0.0:8443",
	"tls":       "auto",
	"max-conns": "60000",
}

// writeExample writes the config file the packages install: every key
// with its description, those of PackagedSettings set, the others
// commented out with their defaults.
func writeExample(w io.Writer) error {
	var c config
	fs := newFlagSet(&c, io.Discard)
	var b strings.Builder
	b.WriteString(`# ajard's configuration (TOML). Every key is one of ajard's flags, by the
# same name; a flag on the command line overrides the key, and so does the
# flag's AJAR_* environment variable (max-conns: AJAR_MAX_CONNS). Lists are
# arrays of strings or comma-separated strings; durations are like "90s",
# "10m", "2h". Secrets stay out of this file: the *-file keys name files
# holding them. Check a change with: ajard config check /etc/ajar/ajard.toml
# Generated by "ajard config example"; every key is described in the README.
`)
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !notInFile[f.Name] {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		usage := strings.ReplaceAll(f.Usage, "\n", " ")
		fmt.Fprintf(&b, "\n# %s\n", usage)
		if v, ok := PackagedSettings[name]; ok {
			fmt.Fprintf(&b, "%s = %s\n", name, tomlText(f, v))
		} else {
			fmt.Fprintf(&b, "#%s = %s\n", name, tomlText(f, f.DefValue))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tomlText writes a flag's value as TOML: numbers and booleans bare,
// everything else quoted.
func tomlText(f *flag.Flag, v string) string {
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64, uint, uint64, bool:
			return v
		}
	}
	return tomlQuote(v)
}

// configCommand runs `ajard config check [FILE]` and `ajard config example`.
func configCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const usage = "usage: ajard config check [FILE] | ajard config example"
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "example":
		if len(args) > 1 {
			return errors.New(usage)
		}
		return writeExample(stdout)
	case "check":
		var path string
		switch len(args) {
		case 1:
			var c config
			path = configFile(newFlagSet(&c, io.Discard), "", getenv)
			if path == "" {
				return fmt.Errorf("no config file: %s does not exist and AJAR_CONFIG is not set; name one: ajard config check FILE", DefaultConfigFile)
			}
		case 2:
			path = args[1]
		default:
			return errors.New(usage)
		}
		c, err := loadConfig(nil, path, func(string) string { return "" }, stderr)
		if err != nil {
			return err
		}
		if _, err := c.sso.provider(); err != nil {
			return c.from.explain(err)
		}
		if c.tlsCert != "" {
			if _, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey); err != nil {
				return c.from.explain(keyErrorf("tls-cert", "%v", err))
			}
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
