package postgres_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// BenchmarkWrite measures record writes per second through one Store, from
// 256 concurrent callers (as many requests in flight as a busy instance
// has), each write one record set. Run with
//
//	go test -run '^$' -bench Write ./db/postgres/
//
// The test server runs with fsync off (about 22,000-26,000 writes/s on a
// 2-core machine); set TEST_DATABASE_URL to measure a durable server (a
// default PostgreSQL 15 on the same machine, fsync and synchronous_commit
// on: about 17,700 writes/s, group commit sharing each fsync).
func BenchmarkWrite(b *testing.B) {
	s := open(b, pgtest.NewDatabase(b))
	const callers = 256
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				name := fmt.Sprintf("bench/%d", g)
				if _, err := s.Write(b.Context(), []api.Write{set(name, `{"x":1}`)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
