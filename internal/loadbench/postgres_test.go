package loadbench_test

import (
	"context"
	"testing"

	"github.com/ajarhq/ajar/internal/ajardtest"
	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/loadbench"
	"github.com/ajarhq/ajar/internal/store/postgres/pgtest"
)

// BenchmarkRequestsPostgres measures accepted access requests per second
// against ajard replicas sharing one PostgreSQL database, 32 concurrent
// clients split evenly over the replicas.
// Run: go test -run XXX -bench RequestsPostgres -benchtime 10000x ./internal/loadbench/
// (with AJAR_TEST_POSTGRES set; scripts/test.sh starts a cluster).
func BenchmarkRequestsPostgres(b *testing.B) {
	for _, replicas := range []int{1, 2} {
		b.Run(map[int]string{1: "1replica", 2: "2replicas"}[replicas], func(b *testing.B) {
			dsn := pgtest.NewDatabase(b)
			var servers []*ajardtest.Server
			for range replicas {
				servers = append(servers, ajardtest.Start(b, ajardtest.Options{DB: dsn, Args: []string{"--log-level", "warn"}}))
			}
			ctx := context.Background()
			token, vms, err := loadbench.Setup(ctx, servers[0].Admin, 50)
			if err != nil {
				b.Fatal(err)
			}
			var clients []*client.Client
			for _, s := range servers {
				clients = append(clients, s.Client(token))
			}
			loadbench.Run(ctx, clients, vms, 8, 200)
			cpu0 := cpuTime(b, servers...)
			b.ResetTimer()
			res := loadbench.Run(ctx, clients, vms, 32, max(b.N, 1000))
			b.StopTimer()
			report(b, res)
			b.ReportMetric(float64((cpuTime(b, servers...)-cpu0).Microseconds())/float64(res.Accepted), "ajard-cpu-µs/req")
			v, err := servers[len(servers)-1].Admin.Verify(ctx)
			if err != nil || !v.OK {
				b.Fatalf("activity log after the load: %+v %v", v, err)
			}
		})
	}
}
