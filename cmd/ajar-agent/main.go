// Command ajar-agent enforces ajar's JIT policies on a Linux host with
// nftables. It enrolls once with a token, then connects out to the server
// (no inbound port), applies its VM's desired state the moment it changes,
// and keeps the lock and the kernel-timed grants in place even when the
// server is unreachable.
//
//	ajar-agent enroll --server URL --token ENROLL_TOKEN [--ca-fingerprint sha256:HEX] [--name NAME]
//	ajar-agent run
//	ajar-agent status
//	ajar-agent uninstall
//	ajar-agent --version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/ajarhq/ajar/internal/agent"
	"github.com/ajarhq/ajar/internal/buildinfo"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/nft"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ajar-agent:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  ajar-agent enroll --server URL --token ENROLL_TOKEN [--ca-fingerprint sha256:HEX] [--name NAME]
  ajar-agent run
  ajar-agent status
  ajar-agent uninstall
  ajar-agent --version
common flags: --state-dir DIR (default /var/lib/ajar-agent), --log-level LEVEL`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "--version", "-version", "version":
		_, err := fmt.Fprintln(stdout, buildinfo.Read().String("ajar-agent"))
		return err
	}
	fs := flag.NewFlagSet("ajar-agent "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", envOr(getenv, "AJAR_AGENT_STATE_DIR", "/var/lib/ajar-agent"), "folder for the credential and the cached desired state")
	logLevel := fs.String("log-level", envOr(getenv, "AJAR_LOG_LEVEL", "info"), "debug, info, warn or error")
	var server, token, fingerprint, name string
	if cmd == "enroll" {
		fs.StringVar(&server, "server", "", "ajard URL, such as https://ajar.example:8443")
		fs.StringVar(&token, "token", getenv("AJAR_ENROLL_TOKEN"), "enrollment token (env AJAR_ENROLL_TOKEN)")
		fs.StringVar(&fingerprint, "ca-fingerprint", "", "SHA-256 fingerprint of the server's certificate to pin (sha256:HEX)")
		fs.StringVar(&name, "name", "", "VM name (default: the hostname)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %q is not debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	switch cmd {
	case "enroll":
		return enroll(ctx, *stateDir, server, token, fingerprint, name, stdout)
	case "run":
		return runAgent(ctx, *stateDir, log)
	case "status":
		fw, err := nft.New(nft.Options{Logger: log})
		if err != nil {
			return err
		}
		st, err := agent.ReadStatus(ctx, *stateDir, fw)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "uninstall":
		fw, err := nft.New(nft.Options{Logger: log})
		if err != nil {
			return err
		}
		if err := fw.Remove(ctx, jit.VM{}); err != nil {
			return fmt.Errorf("remove table inet ajar: %w", err)
		}
		if err := os.RemoveAll(*stateDir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed table inet ajar and %s\n", *stateDir)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func enroll(ctx context.Context, dir, server, token, fingerprint, name string, stdout io.Writer) error {
	if server == "" || token == "" {
		return errors.New("enroll needs --server and --token")
	}
	if _, err := agent.LoadConfig(dir); err == nil {
		return fmt.Errorf("%s already holds an enrollment; run ajar-agent uninstall first", dir)
	}
	c, err := client.New(server, token, client.Options{Fingerprint: fingerprint, RequireTLS: true, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if name == "" {
		name = host
	}
	e, err := c.Enroll(ctx, jit.Enrollment{Name: name, Hostname: host, OS: runtime.GOOS, Addresses: hostAddresses()})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	cfg := agent.Config{Server: c.BaseURL, Token: e.Secret, Fingerprint: fingerprint, VMID: e.VM.ID, Name: e.VM.Name, Group: e.VM.Group}
	if err := agent.SaveConfig(dir, cfg); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	fmt.Fprintf(stdout, "enrolled as VM %s (%s) in group %s; credential saved in %s\nstart enforcing: systemctl start ajar-agent (or ajar-agent run)\n", e.VM.Name, e.VM.ID, e.VM.Group, dir)
	return nil
}

// hostAddresses lists the host's global unicast addresses.
func hostAddresses() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() && len(out) < 32 {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// memoryLimit is the agent's soft memory limit (unless GOMEMLIMIT is set):
// the agent lives on every host, so the Go runtime is asked to collect and
// hand memory back early rather than let the heap double between cycles.
const memoryLimit = 20 << 20

func runAgent(ctx context.Context, dir string, log *slog.Logger) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	cfg, err := agent.LoadConfig(dir)
	if err != nil {
		return err
	}
	fw, err := nft.New(nft.Options{Logger: log})
	if err != nil {
		return err
	}
	c, err := client.New(cfg.Server, cfg.Token, client.Options{Fingerprint: cfg.Fingerprint, RequireTLS: true, Timeout: 150 * time.Second, HTTP1: true})
	if err != nil {
		return err
	}
	a := &agent.Agent{Dir: dir, Config: cfg, API: c, Firewall: fw, Log: log}
	log.Info("ajar-agent running", "server", cfg.Server, "vm", cfg.Name, "vmId", cfg.VMID)
	return a.Run(ctx)
}
