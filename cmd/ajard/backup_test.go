package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// ajard runs the ajard binary with args and returns its output.
func ajard(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(ajardtest.Binary(t, "ajard"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var headRE = regexp.MustCompile(`Head: ([0-9]+:[0-9a-f]{64})`)

// TestBackupWhileServingAndRestore takes a backup while ajard serves with
// writes in flight, restores it, and checks that the restored database
// holds every event up to the head the backup printed, unchanged, that its
// chain verifies, and that ajard serves from it.
func TestBackupWhileServingAndRestore(t *testing.T) {
	t.Parallel()
	srv := ajardtest.Start(t, ajardtest.Options{})
	ctx := context.Background()
	if _, err := srv.Admin.CreateGroup(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	vm, err := srv.Admin.CreateVM(ctx, jit.NewVM{Name: "web", Group: "prod", Backend: "agent", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin.PutPolicy(ctx, vm.ID, jit.Policy{Ports: []jit.PortRule{{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"*"}, MaxRequestAccessDuration: "PT1H"}}}); err != nil {
		t.Fatal(err)
	}

	// Writers keep the log growing while the backup runs.
	stop := make(chan struct{})
	var wrote atomic.Int64
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := srv.Admin.CreateGroup(ctx, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					t.Errorf("write during backup: %v", err)
					return
				}
				wrote.Add(1)
			}
		})
	}
	for wrote.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	dbPath := strings.TrimPrefix(srv.DB, "sqlite:")
	backup := filepath.Join(t.TempDir(), "ajar-backup.db")
	out, err := ajard(t, "backup", "--db", srv.DB, "--to", backup)
	during := wrote.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("ajard backup: %v\n%s", err, out)
	}
	m := headRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ajard backup printed no head:\n%s", out)
	}
	head, err := jit.ParseAnchor(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	if during <= 20 {
		t.Logf("only %d writes ran during the backup", during)
	}
	// The backup is never written over.
	if out, err := ajard(t, "backup", "--db", srv.DB, "--to", backup); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("backup onto an existing file: %v\n%s", err, out)
	}
	// Nor restored over the database ajard is serving from, even forced.
	if out, err := ajard(t, "restore", "--db", srv.DB, "--force", backup); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("restore over a database in use: %v\n%s", err, out)
	}
	original, err := srv.Admin.ListEvents(ctx, client.EventQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// Not over an existing one without --force.
	if out, err := ajard(t, "restore", "--db", srv.DB, backup); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("restore over an existing database: %v\n%s", err, out)
	}

	// Restore into a new place and serve from it.
	restored := filepath.Join(t.TempDir(), "data", "ajar.db")
	out, err = ajard(t, "restore", "--db", "sqlite:"+restored, backup)
	if err != nil || !strings.Contains(out, "Head: "+head.String()) {
		t.Fatalf("ajard restore: %v\n%s", err, out)
	}
	srv2 := ajardtest.Start(t, ajardtest.Options{DB: "sqlite:" + restored})
	v, err := srv2.Admin.Verify(ctx)
	if err != nil || !v.OK || v.Head == nil || v.Head.Seq < head.Seq {
		t.Fatalf("restored log: %+v %v", v, err)
	}
	got, err := srv2.Admin.ListEvents(ctx, client.EventQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	byseq := map[int64]string{}
	for _, e := range got {
		byseq[e.Seq] = e.Hash
	}
	n := 0
	for _, e := range original {
		if e.Seq > head.Seq {
			break
		}
		n++
		if byseq[e.Seq] != e.Hash {
			t.Fatalf("event %d: restored hash %q, original %q", e.Seq, byseq[e.Seq], e.Hash)
		}
	}
	if int64(n) != head.Seq || byseq[head.Seq] != head.Hash {
		t.Fatalf("restored %d events up to the head %s", n, head)
	}
	// It serves: VMs, a request that opens a grant.
	vms, err := srv2.Admin.ListVMs(ctx, "prod", "", "")
	if err != nil || len(vms) != 1 {
		t.Fatalf("restored VMs: %v %v", vms, err)
	}
	req, err := srv2.Admin.RequestAccess(ctx, jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: vm.ID, Ports: []jit.PortRequest{{Number: 22, Duration: "PT10M", AllowedSourceAddressPrefix: "198.51.100.7"}}}}, Justification: "after restore"})
	if err != nil || req.Status != jit.RequestApproved {
		t.Fatalf("request after restore: %+v %v", req, err)
	}

	// Over the old database with --force: kept beside it.
	srv2.Stop()
	out, err = ajard(t, "restore", "--db", srv.DB, "--force", backup)
	if err != nil || !strings.Contains(out, "Kept the database it replaces as ") {
		t.Fatalf("forced restore: %v\n%s", err, out)
	}
	kept, _ := filepath.Glob(dbPath + ".before-restore-*Z")
	if len(kept) != 1 {
		t.Fatalf("the replaced database was not kept: %v", kept)
	}
	if kv, err := checkCopy(ctx, kept[0]); err != nil || kv.Events != int64(len(original)) {
		t.Fatalf("the kept database: %+v %v, want its %d events", kv, err, len(original))
	}

	// A copy whose chain was edited is refused, and nothing changes.
	bad := filepath.Join(t.TempDir(), "edited.db")
	if err := copyFile(backup, bad); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE events SET actor = 'mallory' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	target := filepath.Join(t.TempDir(), "ajar.db")
	out, err = ajard(t, "restore", "--db", "sqlite:"+target, bad)
	if err == nil || !strings.Contains(out, "does not verify: event 3") {
		t.Fatalf("restore of an edited copy: %v\n%s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), "*")); len(left) != 0 {
		t.Fatalf("a refused restore left files: %v", left)
	}
	// Not a database at all.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("hello"), 0o600)
	if out, err := ajard(t, "restore", "--db", "sqlite:"+target, junk); err == nil || !strings.Contains(out, "not a SQLite database") {
		t.Fatalf("restore of a non-database: %v\n%s", err, out)
	}
	// PostgreSQL has its own tools.
	if out, err := ajard(t, "backup", "--db", "postgres://db.example/ajar", "--to", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(out, "pg_dump") {
		t.Fatalf("backup of PostgreSQL: %v\n%s", err, out)
	}
}

// ajard backup and restore work on the database ajard itself would open:
// the config file's, unless AJAR_DB says otherwise.
func TestBackupFindsTheConfiguredDatabase(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ajard.toml")
	if err := os.WriteFile(conf, []byte("db = \"sqlite:/var/lib/ajar-test/ajar.db\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AJAR_CONFIG": conf}
	getenv := func(k string) string { return env[k] }
	if got := configuredDB(getenv); got != "sqlite:/var/lib/ajar-test/ajar.db" {
		t.Errorf("with a config file: %q, want the file's db", got)
	}
	env["AJAR_DB"] = "sqlite:/elsewhere/ajar.db"
	if got := configuredDB(getenv); got != "sqlite:/elsewhere/ajar.db" {
		t.Errorf("with AJAR_DB over the file: %q", got)
	}
	if got := configuredDB(func(string) string { return "" }); got != defaultDB && !strings.Contains(got, "/var/lib/ajar") {
		t.Errorf("with nothing: %q, want the default (or this machine's /etc/ajar/ajard.toml)", got)
	}
}
