package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// BenchmarkRouteCollections measures the hub's routing of one record
// change with n collection subscriptions on distinct prefixes and n
// single-record ones (each on a stream of its own), for names of two
// depths. The change matches one collection, whose queue is emptied
// now and then. The cost must follow the depth of the name, not n.
func BenchmarkRouteCollections(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, depth := range []int{2, 6} {
			b.Run(fmt.Sprintf("subs=%d/depth=%d", n, depth), func(b *testing.B) {
				store, err := embedded.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				defer store.Close()
				h := NewHub(store, store.Bus(), AllowAll{}, HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 30}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				deep := strings.Repeat("d/", depth-2)
				var target *Stream
				for i := range n {
					for _, x := range []api.Subscription{{Record: fmt.Sprintf("c%d/%s*", i, deep)}, {Record: fmt.Sprintf("r%d", i)}} {
						s := &Stream{hub: h, q: queue{limit: 1 << 30}, wake: make(chan struct{}, 1)}
						y, err := newSub(api.StreamSub{Subscription: x})
						if err != nil {
							b.Fatal(err)
						}
						s.subs = []*sub{y}
						h.index(s, y, 1)
						if i == n/2 && y.coll != nil {
							target = s
						}
					}
				}
				ch := &api.Change{Kind: api.KindSet, Name: fmt.Sprintf("c%d/%sx", n/2, deep), Version: 1, Data: []byte(`1`)}
				if got := strings.Count(ch.Name, "/") + 1; got != depth {
					b.Fatalf("depth %d", got)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					ch.Seq = int64(i + 1)
					h.dispatch(ch)
					if i%1024 == 0 {
						target.q.recycle(target.q.take())
					}
				}
			})
		}
	}
}

// BenchmarkCollectionFanOut compares the fan-out of record changes to
// 1,000 streams each subscribed to the collection fan/* with the fan-out
// to 1,000 streams each subscribed to the single record fan/x: the same
// store, the same changes (of fan/x, dispatched as the hub's Run does),
// the same writer pool onto connections that drop the bytes. Run it with
// -count: the two kinds alternate, and collection/record is the ratio to
// read (the issue asks for at least 0.9).
//
//	go test -run '^$' -bench CollectionFanOut -benchtime 3000x -count 5 ./realtime/
func BenchmarkCollectionFanOut(b *testing.B) {
	const subscribers = 1000
	for _, kind := range []struct {
		name  string
		sub   api.Subscription
		start int64 // frames before the changes: ready, and synced for a collection
	}{
		{"record", api.Subscription{Record: "fan/x"}, 2},     // ready, snapshot
		{"collection", api.Subscription{Record: "fan/*"}, 2}, // ready, synced (an empty collection)
	} {
		b.Run(kind.name, func(b *testing.B) {
			store, err := embedded.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
				Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
			}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			close(hub.started) // no Run: the benchmark dispatches itself
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			poolDone := make(chan struct{})
			go func() { hub.runPool(ctx); close(poolDone) }()
			conns := make([]*countConn, subscribers)
			for i := range conns {
				s, err := hub.Open(ctx, api.User{}, []api.Subscription{kind.sub}, "")
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = &countConn{want: kind.start + int64(b.N), done: make(chan struct{})}
				if err := s.Detach(ctx, conns[i]); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range conns { // every start written before the clock runs
				for c.frames.Load() < kind.start {
					time.Sleep(time.Millisecond)
				}
			}
			data := []byte(`{"lat":48.8566,"lng":2.3522,"speed":42}`)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for n := range b.N {
				hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindSet, Name: "fan/x", Version: int64(n + 1), Data: data})
			}
			for _, c := range conns {
				<-c.done
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N*subscribers)/elapsed.Seconds(), "frames/s")
			hub.Drain()
			cancel()
			<-poolDone
		})
	}
}
