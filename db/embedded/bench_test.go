package embedded_test

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// BenchmarkPublish measures durable event appends from 8 concurrent
// writers (the closed-loop publishers of ssebench's many-topics scenario):
// group commit shares one log append and fsync among the waiting writes.
func BenchmarkPublish(b *testing.B) {
	s, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := []api.Write{{Kind: api.KindEvent, Name: "t1", Data: []byte(`"@ts=1234567890123456789"`)}}
	b.SetParallelism(benchPar) // x GOMAXPROCS(2) writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Write(context.Background(), w); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

var benchPar = 4
