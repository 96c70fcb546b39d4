package e2e

import (
	"fmt"
	"testing"
)

// BenchmarkPGRPCRoundTrip is BenchmarkRPCRoundTrip on Postgres: 4
// providers (api/client.Provide) and 64 requesters calling at once (and 1,
// for the latency of an idle server), each call a full round trip. On
// "same", requesters and providers use one instance; "across", requesters
// call instance A and providers poll instance B, so that every request and
// answer crosses through the queue's tables and NOTIFY. It reports round
// trips per second and the p50 and p99 latency of one call.
//
//	go test -run '^$' -bench PGRPCRoundTrip -benchtime 5000x ./e2e/
func BenchmarkPGRPCRoundTrip(b *testing.B) {
	for _, where := range []struct {
		name      string
		instances int
	}{{"same", 1}, {"across", 2}} {
		for _, requesters := range []int{64, 1} {
			b.Run(fmt.Sprintf("%s/providers=4/requesters=%d", where.name, requesters), func(b *testing.B) {
				servers := pgRPCServers(b, where.instances, nil)
				measureRPC(b, servers[0].URL, servers[where.instances-1].URL, 4, requesters)
			})
		}
	}
}
