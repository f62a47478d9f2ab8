package lifecycletest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
	"github.com/ajarhq/ajar/internal/store/postgres"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
)

// pgTool finds a PostgreSQL client program: on the PATH, or where
// Debian's postgresql package puts it.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name); len(m) > 0 {
		return m[len(m)-1]
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; CI must run the PostgreSQL tests", name)
	}
	t.Skipf("%s is not installed (Debian: the postgresql package)", name)
	return ""
}

func events(t *testing.T, st store.Store) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	err := st.View(context.Background(), func(tx store.Tx) error {
		return tx.WalkEvents(func(e *jit.Event) bool { out[e.Seq] = e.Hash; return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPostgresDumpRestores dumps a PostgreSQL database with pg_dump while
// writes go on (as the README says), restores it into another database
// with pg_restore, and checks that the copy holds the same chain, verifies
// and serves.
func TestPostgresDumpRestores(t *testing.T) {
	ctx := context.Background()
	src := pgtest.NewDatabase(t)
	dump, restore := pgTool(t, "pg_dump"), pgTool(t, "pg_restore")
	st, err := postgres.Open(ctx, src, Quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := Populate(ctx, st); err != nil {
		t.Fatal(err)
	}

	// Writes in flight during the dump.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := st.Update(ctx, func(tx store.Tx) error {
				if err := tx.CreateGroup(jit.Group{Name: fmt.Sprintf("during-%d", i), CreatedAt: time.Now()}); err != nil {
					return err
				}
				return tx.AppendEvent(&jit.Event{Time: time.Now(), Actor: "test", Operation: jit.OpGroupCreate, Outcome: jit.OutcomeSuccess})
			})
			if err != nil {
				t.Errorf("write during the dump: %v", err)
				return
			}
		}
	})
	file := filepath.Join(t.TempDir(), "ajar.dump")
	var out bytes.Buffer
	cmd := exec.Command(dump, "--format=custom", "--no-owner", "--file="+file, "--dbname="+src)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out.String())
	}

	dst := pgtest.NewDatabase(t)
	cmd = exec.Command(restore, "--no-owner", "--exit-on-error", "--dbname="+dst, file)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out.String())
	}
	copied, err := postgres.Open(ctx, dst, Quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	got, want := events(t, copied), events(t, st)
	for seq, h := range got {
		if want[seq] != h {
			t.Fatalf("event %d of the restored copy differs from the original's", seq)
		}
	}
	for seq := int64(1); seq <= int64(len(got)); seq++ {
		if got[seq] == "" {
			t.Fatalf("the restored copy lacks event %d (it holds %d)", seq, len(got))
		}
	}
	v, err := control.VerifyLog(ctx, copied, nil)
	if err != nil || !v.OK {
		t.Fatalf("restored log: %+v %v", v, err)
	}
	if err := CheckServes(ctx, copied, v.Events); err != nil {
		t.Fatal(err)
	}
}
