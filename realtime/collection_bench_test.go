package realtime

import (
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
