// Package ajardtest starts real ajard servers for tests: the binary built
// from this module, on a free loopback port (or any address given), with a
// fresh SQLite database, stopped when the test ends.
package ajardtest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
)

// AdminToken is the bootstrap token of every test server.
const AdminToken = "ajar_test-admin-token-0123456789"

var (
	buildMu sync.Mutex
	built   = map[string]error{}
)

// Binary returns the path of a command of this module (such as "ajard" or
// "ajar-agent"), built once per test process into one folder per checkout
// (so that test runs leave no copies behind, and runs in other worktrees
// do not replace it); the new build replaces the old one atomically, which
// running copies survive.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	// One folder per checkout: test runs of several worktrees at once
	// must not run each other's builds.
	_, file, _, _ := runtime.Caller(0)
	h := fnv.New32a()
	h.Write([]byte(filepath.Dir(file)))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("ajar-test-bin-%d-%08x", os.Getuid(), h.Sum32()))
	path := filepath.Join(dir, name)
	err, ok := built[name]
	if !ok {
		err = build(dir, name)
		built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func build(dir, name string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/"+name)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out.String())
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// Server is a running ajard.
type Server struct {
	URL     string
	DB      string // the --db value
	Dir     string // its data folder
	Admin   *client.Client
	Cmd     *exec.Cmd
	Log     *syncBuffer
	Args    []string
	t       testing.TB
	stopped bool
	exited  chan struct{}
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configure Start.
type Options struct {
	Listen string   // default 127.0.0.1:0
	DB     string   // default sqlite:<tempdir>/ajar.db
	Dir    string   // data folder; default a new temp dir
	Args   []string // extra flags
	// Wrap runs ajard under a wrapper command, such as
	// []string{"ip", "netns", "exec", "NAME"}.
	Wrap []string
	// Dial, when set, makes the connections of the admin client, for a
	// server listening inside a network namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Start starts ajard and waits until it answers /healthz.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.DB == "" {
		o.DB = "sqlite:" + filepath.Join(o.Dir, "ajar.db")
	}
	s := &Server{DB: o.DB, Dir: o.Dir, t: t}
	s.dial = o.Dial
	s.Args = append([]string{"--listen", o.Listen, "--db", o.DB, "--data-dir", o.Dir, "--log-level", "debug"}, o.Args...)
	t.Cleanup(func() { s.Stop() }) // before start, so a server that hangs at start is stopped too
	s.start(o.Wrap)
	return s
}

func (s *Server) start(wrap []string) {
	t := s.t
	t.Helper()
	ready := filepath.Join(s.Dir, fmt.Sprintf("ready-%d", time.Now().UnixNano()))
	args := append(append([]string{}, s.Args...), "--ready-file", ready)
	argv := append(append([]string{}, wrap...), Binary(t, "ajard"))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "AJAR_BOOTSTRAP_TOKEN="+AdminToken)
	s.Log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = s.Log, s.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ajard: %v", err)
	}
	s.Cmd, s.stopped = cmd, false
	exited := make(chan struct{})
	s.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			s.URL = string(b)
			break
		}
		select {
		case <-exited:
			t.Fatalf("ajard exited at start:\n%s", s.Log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ajard did not start within 30s:\n%s", s.Log.String())
		}
	}
	opts := client.Options{Timeout: 60 * time.Second}
	if strings.HasPrefix(s.URL, "https://") {
		opts.Fingerprint = s.Fingerprint()
	}
	c, err := client.New(s.URL, AdminToken, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.dial != nil {
		c.HTTP.Transport.(*http.Transport).DialContext = s.dial
	}
	s.Admin = c
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Health(ctx); err != nil {
		t.Fatalf("ajard health: %v\n%s", err, s.Log.String())
	}
}

// Fingerprint returns the TLS fingerprint ajard printed at start.
func (s *Server) Fingerprint() string {
	for _, line := range strings.Split(s.Log.String(), "\n") {
		if f, ok := strings.CutPrefix(line, "TLS certificate fingerprint: "); ok {
			return strings.TrimSpace(f)
		}
	}
	return ""
}

// Stop stops ajard with SIGTERM and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops ajard with SIGKILL.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	if s.stopped || s.Cmd == nil {
		return
	}
	s.stopped = true
	syscall.Kill(-s.Cmd.Process.Pid, sig)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-s.Cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// Restart starts ajard again on the same database and data folder.
func (s *Server) Restart(wrap ...string) {
	s.t.Helper()
	s.Stop()
	for i, a := range s.Args {
		if a == "--listen" && strings.HasSuffix(s.Args[i+1], ":0") {
			// Keep the same port so clients and agents find it again.
			s.Args[i+1] = strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
		}
	}
	s.start(wrap)
}

// Client returns a client with another token, sharing the admin client's
// transport.
func (s *Server) Client(token string) *client.Client {
	c := *s.Admin
	c.Token = token
	return &c
}

// ClientVia returns a client with another token whose connections are made
// by dial (for example from inside a client's network namespace).
func (s *Server) ClientVia(token string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *client.Client {
	c := *s.Admin
	c.Token = token
	tr := c.HTTP.Transport.(*http.Transport).Clone()
	tr.DialContext = dial
	c.HTTP = &http.Client{Transport: tr, Timeout: c.HTTP.Timeout}
	return &c
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
