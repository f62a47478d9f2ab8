package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkStartToFirstRequest measures what a user waits for before
// ajar does anything: from starting the `ajar whoami` process to its
// request reaching the server (a loopback server that answers at once),
// and to the process's exit.
//
//	go test -run XXX -bench StartToFirstRequest -benchtime 200x ./cmd/ajar/
func BenchmarkStartToFirstRequest(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "ajar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	arrived := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- time.Now():
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"user":"bench","kind":"user","address":"127.0.0.1","bindings":[]}`))
	}))
	defer srv.Close()
	env := append(os.Environ(), "AJAR_SERVER="+srv.URL, "AJAR_TOKEN=ajar_bench", "XDG_CONFIG_HOME="+b.TempDir())
	var toRequest, toExit []time.Duration
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(bin, "whoami")
		cmd.Env = env
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		err := cmd.Wait()
		end := time.Now()
		if err != nil {
			b.Fatalf("ajar whoami: %v", err)
		}
		select {
		case at := <-arrived:
			toRequest = append(toRequest, at.Sub(start))
		default:
			b.Fatal("ajar whoami exited without a request reaching the server")
		}
		toExit = append(toExit, end.Sub(start))
	}
	b.StopTimer()
	slices.Sort(toRequest)
	slices.Sort(toExit)
	q := func(d []time.Duration, p float64) float64 {
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(toRequest, 0.5), "first-request-p50-ms")
	b.ReportMetric(q(toRequest, 0.99), "first-request-p99-ms")
	b.ReportMetric(q(toExit, 0.5), "exit-p50-ms")
}
