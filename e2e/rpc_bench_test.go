package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api/client"
)

// BenchmarkRPCRoundTrip measures calls through a real server on the
// embedded store: 4 providers (api/client.Provide) and 64 requesters
// calling at once (and 1, for the latency of an idle server), each call a
// full round trip (POST /rpc/echo, the provider's poll, its answer, the
// reply). It reports round trips per second and the p50 and p99 latency
// of one call.
//
//	go test -run '^$' -bench RPCRoundTrip -benchtime 20000x ./e2e/
func BenchmarkRPCRoundTrip(b *testing.B) {
	for _, requesters := range []int{64, 1} {
		b.Run(fmt.Sprintf("providers=4/requesters=%d", requesters), func(b *testing.B) {
			benchmarkRPC(b, 4, requesters)
		})
	}
}

func benchmarkRPC(b *testing.B, providers, requesters int) {
	srv := startRPCServer(b, nil)
	measureRPC(b, srv.URL, srv.URL, providers, requesters)
}

// measureRPC runs b.N calls of the RPC echo from requesters goroutines on
// the server at callURL, served by providers api/client.Provide loops on
// the server at provideURL, and reports round trips per second and the
// p50 and p99 latency of one call.
func measureRPC(b *testing.B, callURL, provideURL string, providers, requesters int) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	b.Cleanup(hc.CloseIdleConnections)
	caller, provider := client.New(callURL, ""), client.New(provideURL, "")
	caller.HTTP, provider.HTTP = hc, hc
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range providers {
		wg.Go(func() {
			provider.Provide(ctx, []string{"echo"}, func(_ context.Context, req client.Request) (any, error) {
				return req.Data, nil
			})
		})
	}
	defer func() { cancel(); wg.Wait() }()
	var ready string
	for deadline := time.Now().Add(30 * time.Second); caller.Call(ctx, "echo", "warm", &ready) != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no provider in 30s")
		}
	}

	lat := make([][]time.Duration, requesters)
	var left atomic.Int64
	left.Store(int64(b.N))
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var calls sync.WaitGroup
	for r := range requesters {
		calls.Go(func() {
			var out int
			for i := 0; left.Add(-1) >= 0; i++ {
				t0 := time.Now()
				if err := caller.Call(ctx, "echo", i, &out); err != nil || out != i {
					failed.Add(1)
				}
				lat[r] = append(lat[r], time.Since(t0))
			}
		})
	}
	calls.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
