// Command ajard is the ajar server: the REST API, the agents' endpoint and
// the grant expiry timer, over an embedded SQLite database by default.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ajarhq/ajar/internal/azureapi"
	"github.com/ajarhq/ajar/internal/buildinfo"
	"github.com/ajarhq/ajar/internal/console"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/selfsigned"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ajard:", err)
		os.Exit(1)
	}
}

// config is ajard's configuration from flags, environment and config file.
type config struct {
	listen, db, logLevel, dataDir string
	// dbFile and bootstrapTokenFile name files holding the --db value
	// and the first admin's token, to keep secrets out of the config.
	dbFile, bootstrapTokenFile string
	limits                     limits
	shutdownTimeout            time.Duration
	trustedProxies             []netip.Prefix
	tlsMode, tlsCert, tlsKey   string
	tlsHosts                   string
	readyFile                  string
	// publicURL is the address people reach ajard at, for the links it
	// prints; default the listening address.
	publicURL string
	sso       ssoFlags // --oidc-*
	// Azure: subscriptions ajar manages (discovery, NSG enforcement, the
	// Azure-compatible API), optional resource groups to limit discovery
	// to, the default ascLocation, and how often to re-discover.
	azureSubs, azureGroups []string
	azureLocation          string
	azureSyncEvery         time.Duration
	// azureAPISub is the subscription the Azure-compatible API serves
	// ajar's own VMs under, without any call to Azure.
	azureAPISub string
	gcp         gcpFlags     // --gcp-*
	aws         awsFlags     // --aws-*
	retention   retention    // --log-retention, --log-archive-dir
	webhooks    webhookFlags // --webhook-*

	// The flags' text before parsing.
	proxyList, azureSubList, azureGroupList string
	configPath                              string
	showVersion                             bool
	from                                    sources
}

// newFlagSet registers ajard's flags, with their defaults, to fill c.
// Each is also a config file key and an AJAR_* variable (see config.go).
func newFlagSet(c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ajard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ajard [flags]                              serve\n"+
			"       ajard backup --to FILE [--db DB]           copy the SQLite database while ajard serves\n"+
			"       ajard restore [--db DB] [--force] FILE     put a backup in place\n\nFlags:\n")
		fs.PrintDefaults()
	}
	c.limits.flags(fs)
	fs.StringVar(&c.configPath, "config", DefaultConfigFile, "config file (TOML) of flag settings; read when present (env AJAR_CONFIG; \"\" for none)")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and commit and exit")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.db, "db", defaultDB, "database: sqlite:PATH or postgres://...")
	fs.StringVar(&c.dbFile, "db-file", "", "file holding the --db value, for a PostgreSQL URL with a password")
	fs.StringVar(&c.bootstrapTokenFile, "bootstrap-token-file", "", "file holding the first admin's API token (ajar_..., 24 characters or more) instead of a generated one; as AJAR_BOOTSTRAP_TOKEN")
	fs.StringVar(&c.dataDir, "data-dir", "", "folder for the automatic TLS certificate (default: the SQLite database's folder, else ajar-data)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long requests under way may take to finish (agents' long polls are answered at once)")
	fs.StringVar(&c.proxyList, "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is trusted")
	fs.StringVar(&c.tlsMode, "tls", "off", "off, or auto for a self-signed certificate kept in the data folder")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&c.tlsHosts, "tls-hosts", "", "comma-separated extra names/IPs for the automatic certificate")
	fs.StringVar(&c.publicURL, "public-url", "", "the URL people reach ajard at, such as https://ajar.example.com, for the links it prints (default the listening address)")
	c.sso.register(fs)
	fs.StringVar(&c.readyFile, "ready-file", "", "write the listening address to this file once serving (for scripts and tests)")
	fs.StringVar(&c.azureSubList, "azure-subscriptions", "", "comma-separated Azure subscription ids to manage")
	fs.StringVar(&c.azureGroupList, "azure-resource-groups", "", "comma-separated resource groups to limit Azure discovery to")
	fs.StringVar(&c.azureLocation, "azure-location", "westeurope", "default ascLocation of the Azure-compatible API")
	fs.DurationVar(&c.azureSyncEvery, "azure-sync-interval", 5*time.Minute, "how often to re-discover Azure VMs")
	fs.StringVar(&c.azureAPISub, "azure-api-subscription", "", "subscription id (a GUID of your choosing) under which the Azure-compatible API serves VMs not discovered in Azure; needs no Azure access")
	c.gcp.register(fs)
	c.aws.register(fs)
	c.retention.register(fs)
	c.webhooks.register(fs)
	return fs
}

// parseConfig reads ajard's settings: the flags in args over the AJAR_*
// environment over the config file over the defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := newFlagSet(&c, stderr)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.showVersion {
		return c, nil
	}
	return loadConfig(args, configFile(fs, c.configPath, getenv), getenv, stderr)
}

// loadConfig reads the config file at path (none when ""), the environment
// and args, and checks the result; an error names the setting at fault
// and where it came from.
func loadConfig(args []string, path string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := newFlagSet(&c, stderr)
	from, err := applySettings(fs, args, path, getenv)
	if err != nil {
		return c, err
	}
	c.from = from
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, from.explain(c.check())
}

// check validates the settings and fills in what follows from them.
func (c *config) check() error {
	if err := c.limits.check(); err != nil {
		return err
	}
	if c.shutdownTimeout <= 0 {
		return keyErrorf("shutdown-timeout", "must be positive, got %s", c.shutdownTimeout)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return keyErrorf("log-level", "%q is not debug, info, warn or error", c.logLevel)
	}
	if c.dbFile != "" {
		if _, set := c.from["db"]; set {
			return keyErrorf("db-file", "--db and --db-file exclude each other")
		}
		b, err := os.ReadFile(c.dbFile)
		if err != nil {
			return keyErrorf("db-file", "%v", err)
		}
		c.db = strings.TrimSpace(string(b))
	}
	if !strings.HasPrefix(c.db, "sqlite:") && !strings.HasPrefix(c.db, "postgres://") && !strings.HasPrefix(c.db, "postgresql://") {
		key := "db"
		if c.dbFile != "" {
			key = "db-file"
		}
		return keyErrorf(key, "%q is not sqlite:PATH or postgres://...", redactDSN(c.db))
	}
	if c.bootstrapTokenFile != "" {
		if _, err := os.Stat(c.bootstrapTokenFile); err != nil {
			return keyErrorf("bootstrap-token-file", "%v", err)
		}
	}
	c.azureSubs, c.azureGroups = splitList(c.azureSubList), splitList(c.azureGroupList)
	if err := validSubscription("azure-api-subscription", c.azureAPISub); err != nil {
		return err
	}
	for _, check := range []func() error{c.gcp.check, c.aws.check, c.retention.check, c.webhooks.check} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.publicURL != "" {
		if u, err := url.Parse(c.publicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return keyErrorf("public-url", "%q is not an http:// or https:// URL without query", c.publicURL)
		}
	}
	c.trustedProxies = nil
	for _, s := range strings.Split(c.proxyList, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return keyErrorf("trusted-proxies", "%q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.trustedProxies = append(c.trustedProxies, p)
	}
	switch c.tlsMode {
	case "off", "auto":
	default:
		return keyErrorf("tls", "must be off or auto, got %q", c.tlsMode)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		if c.tlsCert == "" {
			return keyErrorf("tls-key", "goes with --tls-cert")
		}
		return keyErrorf("tls-cert", "goes with --tls-key")
	}
	if c.tlsCert != "" && c.tlsMode == "auto" {
		return keyErrorf("tls-cert", "--tls=auto and --tls-cert exclude each other")
	}
	if c.dataDir == "" {
		c.dataDir = "ajar-data"
		if p, ok := strings.CutPrefix(c.db, "sqlite:"); ok {
			c.dataDir = filepath.Dir(p)
		}
	}
	return nil
}

// extraCommands are commands added by build tags (manpage.go).
var extraCommands = map[string]func(args []string, stdout io.Writer) error{}

// run is ajard: it serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "config":
			return configCommand(args[1:], getenv, stdout, stderr)
		case "backup":
			return runBackup(ctx, args[1:], getenv, stdout, stderr)
		case "restore":
			return runRestore(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	if len(args) > 0 && extraCommands[args[0]] != nil {
		return extraCommands[args[0]](args[1:], stdout)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.showVersion {
		_, err := fmt.Fprintln(stdout, buildinfo.Read().String("ajard"))
		return err
	}
	log, err := newLogger(cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg.db, log)
	if err != nil {
		return err
	}
	defer st.Close()

	hooks := webhook.New(st, log, cfg.webhooks.config())
	ctl := control.New(hooks.Watch(st), log, time.Now)
	if cfg.webhooks.allowHTTP {
		ctl.AllowHTTPWebhooks()
	}
	bootstrapToken := getenv("AJAR_BOOTSTRAP_TOKEN")
	if cfg.bootstrapTokenFile != "" {
		b, err := os.ReadFile(cfg.bootstrapTokenFile)
		if err != nil {
			return fmt.Errorf("--bootstrap-token-file: %w", err)
		}
		bootstrapToken = strings.TrimSpace(string(b))
	}
	secret, err := ctl.Bootstrap(ctx, bootstrapToken)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if secret != "" && bootstrapToken == "" {
		fmt.Fprintf(stderr, "\nCreated user admin. Its API token (shown once, keep it safe):\n\n    %s\n\n", secret)
	}

	// End what ended while ajard was down before serving anything, so
	// that no ended grant is ever shown or enforced as active.
	if n, err := ctl.ExpireDue(ctx); err != nil {
		return fmt.Errorf("expire grants that ended while stopped: %w", err)
	} else if n > 0 {
		log.Info("expired grants that ended while ajard was stopped", "grants", n)
	}

	provider, err := cfg.sso.provider()
	if err != nil {
		return err
	}
	api := server.New(ctl, log, cfg.trustedProxies)
	web := console.New(ctl, log, api.ClientAddr)
	if provider != nil {
		web.UseSSO(provider, cfg.publicURL)
		api.UseSSO(provider)
	}
	api.Handle("/", web)
	api.Handle("/subscriptions/", azureapi.New(ctl, log, azureAPISubscriptions(cfg), cfg.azureLocation, api.ClientAddr))
	srv := &http.Server{
		Handler: api,
		// Requests under way outlive ctx (SIGTERM) by up to
		// --shutdown-timeout: server.Run stops them, not ctx.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := agentKeepAlive.Listen(ctx, "tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = cfg.limits.apply(srv, api, ln)
	scheme := "http"
	switch {
	case cfg.tlsCert != "":
		scheme = "https"
	case cfg.tlsMode == "auto":
		cert, err := selfsigned.Load(cfg.dataDir, strings.Split(cfg.tlsHosts, ","))
		if err != nil {
			ln.Close()
			return fmt.Errorf("automatic TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
		fmt.Fprintf(stderr, "TLS certificate fingerprint: %s\n", selfsigned.Fingerprint(cert.Certificate[0]))
		web.ShowFingerprint(selfsigned.Fingerprint(cert.Certificate[0]))
	}
	hooks.UsePublicURL(publicURL(cfg.publicURL, scheme, ln.Addr()))
	if err := printSetupLink(ctx, ctl, stderr, publicURL(cfg.publicURL, scheme, ln.Addr())); err != nil {
		ln.Close()
		return fmt.Errorf("setup link: %w", err)
	}
	log.Info("ajard serving", "url", scheme+"://"+ln.Addr().String(), "db", redactDSN(cfg.db))
	if cfg.readyFile != "" {
		if err := os.WriteFile(cfg.readyFile, []byte(scheme+"://"+ln.Addr().String()), 0o600); err != nil {
			ln.Close()
			return err
		}
	}

	var wg sync.WaitGroup
	bg, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { ctl.RunExpirer(bg) })
	wg.Go(func() { ctl.RunWatchHub(bg) })
	wg.Go(func() { runClouds(bg, cfg, ctl, api, log) })
	wg.Go(func() { ctl.RunPresence(bg, 30*time.Second) })
	wg.Go(func() { ctl.RunHeadLog(bg, time.Hour) })
	if cfg.retention.keep > 0 {
		wg.Go(func() {
			if err := ctl.RunLogRetention(bg, cfg.retention.keep, cfg.retention.dir, retentionEvery); err != nil {
				log.Error("log retention stopped", "err", err)
			}
		})
	}
	wg.Go(func() {
		if err := hooks.RunLeading(bg); err != nil {
			log.Error("webhooks stopped", "err", err)
		}
	})

	srv.RegisterOnShutdown(ctl.Drain)
	err = server.Run(ctx, srv, ln, cfg.tlsCert, cfg.tlsKey, cfg.shutdownTimeout)
	log.Info("ajard stopped")
	return err
}

// agentKeepAlive probes connections idle for 15 s every 5 s and drops
// them after 3 unanswered probes: an agent's long poll on a dead
// connection ends (and the agent stops counting as seen) within about
// 30 s of the peer going silent, well inside jit.AgentOfflineAfter.
var agentKeepAlive = net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
