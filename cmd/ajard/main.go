// Command ajard is the ajar server: the REST API, the agents' endpoint and
// the grant expiry timer, over an embedded SQLite database by default.
package main

import (
	"context"
	"crypto/tls"
	"errors"
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
	"github.com/ajarhq/ajar/internal/console"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/selfsigned"
	"github.com/ajarhq/ajar/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ajard:", err)
		os.Exit(1)
	}
}

// config is ajard's configuration from flags and environment.
type config struct {
	listen, db, logLevel, dataDir string
	limits                        limits
	trustedProxies                []netip.Prefix
	tlsMode, tlsCert, tlsKey      string
	tlsHosts                      string
	readyFile                     string
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
	retention   retention // --log-retention, --log-archive-dir
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("ajard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ajard [flags]                              serve\n"+
			"       ajard backup --to FILE [--db DB]           copy the SQLite database while ajard serves\n"+
			"       ajard restore [--db DB] [--force] FILE     put a backup in place\n\nFlags:\n")
		fs.PrintDefaults()
	}
	c.limits.flags(fs)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.listen, "listen", env("AJAR_LISTEN", "127.0.0.1:8080"), "address to listen on (env AJAR_LISTEN)")
	fs.StringVar(&c.db, "db", env("AJAR_DB", defaultDB), "database: sqlite:PATH or postgres://... (env AJAR_DB)")
	fs.StringVar(&c.dataDir, "data-dir", env("AJAR_DATA_DIR", ""), "folder for the automatic TLS certificate (default: the SQLite database's folder, else ajar-data)")
	fs.StringVar(&c.logLevel, "log-level", env("AJAR_LOG_LEVEL", "info"), "debug, info, warn or error (env AJAR_LOG_LEVEL)")
	proxies := fs.String("trusted-proxies", env("AJAR_TRUSTED_PROXIES", ""), "comma-separated CIDRs of proxies whose X-Forwarded-For is trusted")
	fs.StringVar(&c.tlsMode, "tls", env("AJAR_TLS", "off"), "off, or auto for a self-signed certificate kept in the data folder")
	fs.StringVar(&c.tlsCert, "tls-cert", env("AJAR_TLS_CERT", ""), "TLS certificate file (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", env("AJAR_TLS_KEY", ""), "TLS key file (PEM)")
	fs.StringVar(&c.tlsHosts, "tls-hosts", env("AJAR_TLS_HOSTS", ""), "comma-separated extra names/IPs for the automatic certificate")
	fs.StringVar(&c.publicURL, "public-url", env("AJAR_PUBLIC_URL", ""), "the URL people reach ajard at, such as https://ajar.example.com, for the links it prints (env AJAR_PUBLIC_URL; default the listening address)")
	c.sso.register(fs, env)
	c.retention.register(fs, env)
	fs.StringVar(&c.readyFile, "ready-file", "", "write the listening address to this file once serving (for scripts and tests)")
	azureSubs := fs.String("azure-subscriptions", env("AJAR_AZURE_SUBSCRIPTIONS", ""), "comma-separated Azure subscription ids to manage (env AJAR_AZURE_SUBSCRIPTIONS)")
	azureGroups := fs.String("azure-resource-groups", env("AJAR_AZURE_RESOURCE_GROUPS", ""), "comma-separated resource groups to limit Azure discovery to")
	fs.StringVar(&c.azureLocation, "azure-location", env("AJAR_AZURE_LOCATION", "westeurope"), "default ascLocation of the Azure-compatible API")
	fs.DurationVar(&c.azureSyncEvery, "azure-sync-interval", 5*time.Minute, "how often to re-discover Azure VMs")
	fs.StringVar(&c.azureAPISub, "azure-api-subscription", env("AJAR_AZURE_API_SUBSCRIPTION", ""), "subscription id (a GUID of your choosing) under which the Azure-compatible API serves VMs not discovered in Azure; needs no Azure access (env AJAR_AZURE_API_SUBSCRIPTION)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.limits.check(); err != nil {
		return c, err
	}
	if err := c.retention.fromEnv(getenv); err != nil {
		return c, err
	}
	if err := c.retention.check(); err != nil {
		return c, err
	}
	c.azureSubs, c.azureGroups = splitList(*azureSubs), splitList(*azureGroups)
	if err := validSubscription("--azure-api-subscription", c.azureAPISub); err != nil {
		return c, err
	}
	if c.publicURL != "" {
		if u, err := url.Parse(c.publicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return c, fmt.Errorf("--public-url: %q is not an http:// or https:// URL without query", c.publicURL)
		}
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*proxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return c, fmt.Errorf("--trusted-proxies: %q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.trustedProxies = append(c.trustedProxies, p)
	}
	switch c.tlsMode {
	case "off", "auto":
	default:
		return c, fmt.Errorf("--tls must be off or auto, got %q", c.tlsMode)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" && c.tlsMode == "auto" {
		return c, errors.New("--tls=auto and --tls-cert exclude each other")
	}
	if c.dataDir == "" {
		c.dataDir = "ajar-data"
		if p, ok := strings.CutPrefix(c.db, "sqlite:"); ok {
			c.dataDir = filepath.Dir(p)
		}
	}
	return c, nil
}

// run is ajard: it serves until ctx ends; `ajard backup` and `ajard
// restore` copy its SQLite database out and back (backup.go).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "backup":
			return runBackup(ctx, args[1:], getenv, stdout, stderr)
		case "restore":
			return runRestore(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
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

	ctl := control.New(st, log, time.Now)
	secret, err := ctl.Bootstrap(ctx, getenv("AJAR_BOOTSTRAP_TOKEN"))
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if secret != "" && getenv("AJAR_BOOTSTRAP_TOKEN") == "" {
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
	}
	api.Handle("/", web)
	api.Handle("/subscriptions/", azureapi.New(ctl, log, azureAPISubscriptions(cfg), cfg.azureLocation, api.ClientAddr))
	srv := &http.Server{
		Handler:     api,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.listen)
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
	}
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
	wg.Go(func() { runAzure(bg, cfg, ctl, api, log) })
	wg.Go(func() { ctl.RunPresence(bg, 30*time.Second) })
	wg.Go(func() { ctl.RunHeadLog(bg, time.Hour) })
	if cfg.retention.keep > 0 {
		wg.Go(func() {
			if err := ctl.RunLogRetention(bg, cfg.retention.keep, cfg.retention.dir, retentionEvery); err != nil {
				log.Error("log retention stopped", "err", err)
			}
		})
	}

	err = server.Run(ctx, srv, ln, cfg.tlsCert, cfg.tlsKey)
	log.Info("ajard stopped")
	return err
}

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
