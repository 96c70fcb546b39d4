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
// the same writer pool onto connections that drop the bytes.
// collection/record is the ratio to read (the issue asks for at least
// 0.9); -count runs one kind's rounds, then the other's, so alternate them
// by hand on a noisy machine:
//
//	for i in 1 2 3 4 5; do for k in record collection; do
//	  go test -run '^$' -bench "Collection(FanOut|Dispatch)/$k" -benchtime 3000x ./realtime/
//	done; done
func BenchmarkCollectionFanOut(b *testing.B) {
	const subscribers = 1000
	for _, kind := range fanOutKinds {
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

// fanOutKinds are the two subscriptions that BenchmarkCollectionFanOut and
// BenchmarkCollectionDispatch compare.
var fanOutKinds = []struct {
	name  string
	sub   api.Subscription
	start int64 // frames before the changes: ready, and synced for a collection
}{
	{"record", api.Subscription{Record: "fan/x"}, 2},     // ready, snapshot
	{"collection", api.Subscription{Record: "fan/*"}, 2}, // ready, synced (an empty collection)
}

// dispatchBench is a hub with 1,000 detached streams of one kind, served
// on the caller's goroutine.
type dispatchBench struct {
	hub   *Hub
	conns []*countConn
	buf   []*Stream
	seq   int64
}

func newDispatchBench(b *testing.B, sub api.Subscription, start int64) *dispatchBench {
	const subscribers = 1000
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	close(hub.started)
	d := &dispatchBench{hub: hub, conns: make([]*countConn, subscribers), buf: make([]*Stream, 64)}
	for i := range d.conns {
		s, err := hub.Open(context.Background(), api.User{}, []api.Subscription{sub}, "")
		if err != nil {
			b.Fatal(err)
		}
		d.conns[i] = &countConn{want: 1 << 62, done: make(chan struct{})}
		if err := s.Detach(context.Background(), d.conns[i]); err != nil {
			b.Fatal(err)
		}
	}
	d.serveAll() // Detach scheduled each stream
	d.check(b, start)
	return d
}

// serveAll serves every stream once, as the writers do when woken.
func (d *dispatchBench) serveAll() {
	ctx := context.Background()
	for served := 0; served < len(d.conns); {
		batch := d.hub.pool.next(ctx, d.buf)
		for _, s := range batch {
			d.hub.serve(ctx, s)
		}
		served += len(batch)
		clear(batch)
	}
}

var fanOutData = []byte(`{"lat":48.8566,"lng":2.3522,"speed":42}`)

// step dispatches the next change of fan/x and serves every stream.
func (d *dispatchBench) step() {
	d.seq++
	d.hub.dispatch(&api.Change{Seq: d.seq, Kind: api.KindSet, Name: "fan/x", Version: d.seq, Data: fanOutData})
	d.serveAll()
}

// check fails b unless every stream has written want frames.
func (d *dispatchBench) check(b *testing.B, want int64) {
	for i, c := range d.conns {
		if got := c.frames.Load(); got != want {
			b.Fatalf("stream %d: %d frames, want %d", i, got, want)
		}
	}
}

// BenchmarkCollectionDispatch is BenchmarkCollectionFanOut on one
// goroutine, as BenchmarkDispatchPool is BenchmarkFanOutPool: each change
// dispatched to the 1,000 detached streams, which are then served as a
// writer does, onto connections that drop the bytes. The scheduler and
// other processes weigh little in it.
func BenchmarkCollectionDispatch(b *testing.B) {
	for _, kind := range fanOutKinds {
		b.Run(kind.name, func(b *testing.B) {
			d := newDispatchBench(b, kind.sub, kind.start)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				d.step()
			}
			b.StopTimer()
			d.check(b, kind.start+int64(b.N))
			b.ReportMetric(float64(b.N*len(d.conns))/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkCollectionRatio runs both kinds of BenchmarkCollectionDispatch
// in one sitting, change by change, alternating which goes first, and
// reports collection/record: the collection subscribers' frames per second
// over the single-record subscribers'. Interleaving at this grain leaves
// the load of a shared machine out of the ratio.
func BenchmarkCollectionRatio(b *testing.B) {
	rec := newDispatchBench(b, fanOutKinds[0].sub, fanOutKinds[0].start)
	coll := newDispatchBench(b, fanOutKinds[1].sub, fanOutKinds[1].start)
	var inRec, inColl time.Duration
	timed := func(d *dispatchBench, sum *time.Duration) {
		start := time.Now()
		d.step()
		*sum += time.Since(start)
	}
	b.ResetTimer()
	for n := range b.N {
		if n%2 == 0 {
			timed(rec, &inRec)
			timed(coll, &inColl)
		} else {
			timed(coll, &inColl)
			timed(rec, &inRec)
		}
	}
	b.StopTimer()
	rec.check(b, fanOutKinds[0].start+int64(b.N))
	coll.check(b, fanOutKinds[1].start+int64(b.N))
	b.ReportMetric(inRec.Seconds()/inColl.Seconds(), "collection/record")
	b.ReportMetric(float64(b.N*len(rec.conns))/inRec.Seconds(), "record-frames/s")
	b.ReportMetric(float64(b.N*len(coll.conns))/inColl.Seconds(), "collection-frames/s")
}
