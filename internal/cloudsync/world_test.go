package cloudsync

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/azurensg"
	"github.com/ajarhq/ajar/internal/azurensg/azurefake"
	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// world is one ajard's worth of parts, in process: a real SQLite store
// (or PostgreSQL, see newReplica),
// the control plane with its expirer, and a Syncer whose real Azure SDK
// clients talk to the in-memory Azure f.
type world struct {
	t      *testing.T
	f      *azurefake.Azure
	dbPath string
	dsn    string // a PostgreSQL database instead of dbPath, when set
	db     store.Store
	ctl    *control.Control
	syncer *Syncer
	// provider is the Azure provider the Syncer runs; tests may change
	// its resource groups before a sync.
	provider *azurensg.Provider
	log      *slog.Logger

	stop func() // stops what start started and waits for it
}

var (
	me    = netip.MustParseAddr("203.0.113.7")
	other = netip.MustParseAddr("198.51.100.99")
)

func newWorld(t *testing.T) *world {
	w := &world{t: t, f: azurefake.New(t), dbPath: filepath.Join(t.TempDir(), "ajar.db")}
	w.f.SetPolls(0)
	w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.open()
	t.Cleanup(w.close)
	return w
}

// open opens the database and builds the control plane and the Syncer,
// as ajard does when it starts.
func (w *world) open() {
	var db store.Store
	var err error
	if w.dsn != "" {
		db, err = postgres.Open(context.Background(), w.dsn, w.log)
	} else {
		db, err = sqlite.Open(context.Background(), w.dbPath, w.log)
	}
	if err != nil {
		w.t.Fatalf("open store: %v", err)
	}
	w.db = db
	w.ctl = control.New(db, w.log, time.Now)
	opts := w.f.ClientOptions()
	opts.Retry.MaxRetries = -1 // the Syncer's own retries are under test
	client := azurensg.NewClient(w.f.Credential(), opts, w.log, nil)
	w.provider = azurensg.NewProvider(azurensg.NewEnforcer(client, w.log), []string{azurefake.Subscription}, nil)
	w.syncer = New(w.ctl, w.provider, Config{
		Every:    time.Hour,
		RetryMin: 20 * time.Millisecond,
		RetryMax: 200 * time.Millisecond,
	}, w.log)
}

// start runs the expirer and the Syncer in the background.
func (w *world) start() {
	if w.stop != nil {
		w.t.Fatal("already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.ctl.RunExpirer(ctx) })
	wg.Go(func() {
		if err := w.syncer.RunLeading(ctx); err != nil {
			w.t.Errorf("run: %v", err)
		}
	})
	w.stop = func() { cancel(); wg.Wait(); w.stop = nil }
}

// newReplica is one of several servers sharing the PostgreSQL database
// dsn, each with an Azure of its own (so that what each one writes to
// Azure can be told apart).
func newReplica(t *testing.T, dsn string) *world {
	w := &world{t: t, f: azurefake.New(t), dsn: dsn}
	w.f.SetPolls(0)
	w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.open()
	t.Cleanup(w.close)
	return w
}

func (w *world) close() {
	if w.stop != nil {
		w.stop()
	}
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
}

// restart stops everything, reopens the database and builds everything
// anew, without starting it.
func (w *world) restart() {
	w.close()
	w.open()
}

type testWriter struct{ t *testing.T }

func (tw testWriter) Write(p []byte) (int, error) {
	tw.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// admin is an administrator calling from me.
var admin = &control.Actor{User: "root", Address: me, Token: jit.Token{Kind: jit.TokenUser},
	Bindings: []jit.RoleBinding{{User: "root", Role: jit.RoleAdmin, Group: jit.AllGroups}}}

func ctx() context.Context { return context.Background() }

// vm returns the VM named name, failing the test when there is not exactly one.
func (w *world) vm(name string) jit.VMView {
	w.t.Helper()
	vms, _, err := w.ctl.ListVMs(ctx(), admin, control.VMListFilter{Name: name})
	if err != nil {
		w.t.Fatalf("list VMs: %v", err)
	}
	if len(vms) != 1 {
		w.t.Fatalf("%d VMs named %s", len(vms), name)
	}
	return vms[0]
}

func (w *world) enableJIT(vmID string, ports ...int) {
	w.t.Helper()
	var p jit.Policy
	for _, n := range ports {
		p.Ports = append(p.Ports, jit.PortRule{Number: n, Protocol: jit.ProtoAny, AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT3H"})
	}
	if _, err := w.ctl.PutPolicy(ctx(), admin, vmID, p); err != nil {
		w.t.Fatalf("enable JIT: %v", err)
	}
}

func (w *world) request(vmID string, port int, duration string) jit.Grant {
	w.t.Helper()
	r, err := w.ctl.RequestAccess(ctx(), admin, jit.AccessRequest{Justification: "test",
		VirtualMachines: []jit.VMRequest{{ID: vmID, Ports: []jit.PortRequest{{Number: port, Duration: duration}}}}})
	if err != nil {
		w.t.Fatalf("request: %v", err)
	}
	return r.Grants[0]
}

// events returns the events of op on the VM vmID.
func (w *world) events(vmID, op string) []jit.Event {
	w.t.Helper()
	evs, _, err := w.ctl.ListEvents(ctx(), admin, control.EventListFilter{VMID: vmID, Operation: op})
	if err != nil {
		w.t.Fatalf("list events: %v", err)
	}
	return evs
}

// eventually waits until cond holds, failing the test after timeout.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ajarRules returns the names of ajar's rules in the NSG nsgID that start
// with prefix.
func (w *world) ajarRules(nsgID, prefix string) []string {
	var out []string
	for name := range w.f.Rules(nsgID, true) {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}
