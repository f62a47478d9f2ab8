package loadbench_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/loadbench"
	"github.com/ajarhq/ajar/internal/server"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// bigState is one ajard (in process, on SQLite) over loadbench.Scale,
// generated once per test binary (with -short, a tenth of it).
var bigState struct {
	once  sync.Once
	url   string
	token string
	err   error
}

func bigServer(b *testing.B) (string, string) {
	b.Helper()
	bigState.once.Do(func() {
		ctx := context.Background()
		log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
		dir, err := os.MkdirTemp("", "ajar-listbench-")
		if err != nil {
			bigState.err = err
			return
		}
		db, err := sqlite.Open(ctx, filepath.Join(dir, "ajar.db"), log)
		if err != nil {
			bigState.err = err
			return
		}
		st := loadbench.Scale
		if testing.Short() {
			st = loadbench.State{VMs: st.VMs / 10, ActiveGrants: st.ActiveGrants / 10, Events: st.Events / 10}
		}
		t0 := time.Now()
		if _, err := loadbench.Generate(ctx, db, st, time.Now()); err != nil {
			bigState.err = err
			return
		}
		b.Logf("generated %+v in %v", st, time.Since(t0).Round(time.Millisecond))
		ctl := control.New(db, log, time.Now)
		secret, err := ctl.Bootstrap(ctx, "")
		if err != nil {
			bigState.err = err
			return
		}
		bigState.url = httptest.NewServer(server.New(ctl, log, nil)).URL // lives as long as the benchmark binary
		bigState.token = secret
	})
	if bigState.err != nil {
		b.Fatal(bigState.err)
	}
	return bigState.url, bigState.token
}

// fetch GETs path and reads the whole body, failing on anything but 200.
func fetch(b *testing.B, url, token, path string) int64 {
	req, err := http.NewRequest(http.MethodGet, url+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return n
}

// BenchmarkListFirstPage measures the first page of every API list (the
// console and CLI read the same pages) over 10,000 VMs, 100,000 active
// grants and 1,000,000 events: time per page (server and loopback HTTP)
// and allocations per page (server and client, in one process).
// Run: go test -run XXX -bench ListFirstPage -benchtime 20x ./internal/loadbench/
func BenchmarkListFirstPage(b *testing.B) {
	url, token := bigServer(b)
	for _, c := range []struct{ name, path string }{
		{"vms", "/api/v1/vms"},
		{"vms-not-configured", "/api/v1/vms?jit=not-configured"},
		{"vms-one-group", "/api/v1/vms?group=g-042"},
		{"grants", "/api/v1/grants?limit=100"},
		{"grants-active", "/api/v1/grants?status=active&limit=100"},
		{"grants-of-user", "/api/v1/grants?user=user-007&limit=100"},
		{"active-grants-of-user", "/api/v1/grants?user=user-007&status=active&limit=100"},
		{"requests", "/api/v1/requests?limit=100"},
		{"activity", "/api/v1/activity?limit=100"},
		{"activity-vm", "/api/v1/activity?vm=vm-04240&limit=100"},
		{"activity-op", "/api/v1/activity?operation=grant.open&limit=100"},
	} {
		b.Run(c.name, func(b *testing.B) {
			fetch(b, url, token, c.path)
			b.ReportAllocs()
			b.ResetTimer()
			var n int64
			for range b.N {
				n += fetch(b, url, token, c.path)
			}
			b.ReportMetric(float64(n)/float64(b.N), "bytes/page")
		})
	}
}

// BenchmarkExportCSV measures a full CSV export of the 1,000,000-event log:
// time, events per second, and the most heap the process held meanwhile
// (sampled every 10 ms), which must not grow with the log.
// Run: go test -run XXX -bench ExportCSV -benchtime 1x ./internal/loadbench/
func BenchmarkExportCSV(b *testing.B) {
	url, token := bigServer(b)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	var n int64
	for range b.N {
		n += fetch(b, url, token, "/api/v1/activity?format=csv")
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(n)/float64(b.N)/(1<<20), "MiB/export")
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-growth-MiB")
}
