package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// countingListening counts and keeps the demand a Listen stores, counts
// the listener calls that reached the store, and fails them all while
// down.
type countingListening struct {
	api.Listening
	mu     sync.Mutex
	writes []api.Demand
	down   atomic.Bool
	calls  struct{ add, remove, except atomic.Int64 }
}

var errDown = api.Errorf(api.CodeUnavailable, "the store is down")

func (c *countingListening) AddListener(ctx context.Context, l api.Listener, expires, now time.Time) ([]string, error) {
	if c.down.Load() {
		return nil, errDown
	}
	c.calls.add.Add(1)
	return c.Listening.AddListener(ctx, l, expires, now)
}

func (c *countingListening) RemoveListener(ctx context.Context, id string, now time.Time) ([]string, error) {
	if c.down.Load() {
		return nil, errDown
	}
	c.calls.remove.Add(1)
	return c.Listening.RemoveListener(ctx, id, now)
}

func (c *countingListening) RemoveListenersExcept(ctx context.Context, instance string, keep []string, now time.Time) ([]string, error) {
	if c.down.Load() {
		return nil, errDown
	}
	c.calls.except.Add(1)
	return c.Listening.RemoveListenersExcept(ctx, instance, keep, now)
}

func (c *countingListening) SetDemand(ctx context.Context, d api.Demand, expires, now time.Time) ([]string, error) {
	c.mu.Lock()
	c.writes = append(c.writes, d)
	c.mu.Unlock()
	return c.Listening.SetDemand(ctx, d, expires, now)
}

func (c *countingListening) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

// listenFixture is a hub that is not running and a running Listen over an
// embedded store whose demand writes are counted.
type listenFixture struct {
	hub     *Hub
	listen  *Listen
	counted *countingListening
}

func newListenFixture(t testing.TB, grace time.Duration) *listenFixture {
	return newListenFixtureWith(t, grace, true)
}

func newListenFixtureWith(t testing.TB, grace time.Duration, listening bool) *listenFixture {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, log)
	close(hub.started)
	counted := &countingListening{Listening: store}
	if !listening {
		return &listenFixture{hub: hub, counted: counted}
	}
	l := NewListen(counted, store.Bus(), hub, ListenConfig{Instance: "i1", LeaveGrace: grace}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &listenFixture{hub: hub, listen: l, counted: counted}
}

// stream opens a registered stream with no subscriptions.
func (f *listenFixture) stream(t testing.TB) *Stream {
	s, err := f.hub.Open(context.Background(), api.User{}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s.sink = discard{}
	f.hub.register(s)
	return s
}

func (f *listenFixture) subscribe(t testing.TB, s *Stream, x api.Subscription, n int) {
	y, err := newSub(api.StreamSub{Subscription: x})
	if err != nil {
		t.Fatal(err)
	}
	f.hub.indexOne(s, y, n)
}

// watchOf returns a Watch of a new subscription x of s (not added to s).
func watchOf(t testing.TB, s *Stream, x api.Subscription) Watch {
	y, err := newSub(api.StreamSub{Subscription: x})
	if err != nil {
		t.Fatal(err)
	}
	return Watch{s, y}
}

// settle waits until Listen has done all its work.
func (f *listenFixture) settle(t testing.TB) {
	if f.listen == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := f.listen
		l.mu.Lock()
		idle := len(l.pending) == 0 && !l.purge && !l.busy && len(l.dirty) == 0 && l.writing == (api.ListenKey{})
		l.mu.Unlock()
		if idle {
			time.Sleep(5 * time.Millisecond) // a write under way has cleared dirty already
			l.mu.Lock()
			idle = len(l.pending) == 0 && !l.purge && !l.busy && len(l.dirty) == 0 && l.writing == (api.ListenKey{})
			l.mu.Unlock()
			if idle {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("listening did not settle in 10s")
}

// Demand is stored only for exact names under a listened prefix, only
// when the number of local subscribers goes between 0, 1 and 2 or more;
// a decrease only after the grace.
func TestListenDemandWrites(t *testing.T) {
	const grace = time.Second
	f := newListenFixture(t, grace)
	a, b, c := f.stream(t), f.stream(t), f.stream(t)
	want := func(n int, what string) {
		t.Helper()
		if !strings.Contains(what, "within the grace") {
			f.settle(t)
		}
		if got := f.counted.count(); got != n {
			t.Fatalf("%s: %d demand writes, want %d: %+v", what, got, n, f.counted.writes)
		}
	}
	// eventually waits for the write that the grace's end brings.
	eventually := func(n int, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); f.counted.count() < n && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		want(n, what)
	}
	eur := api.Subscription{Record: "prices/eur"}
	f.subscribe(t, a, eur, 1)
	want(0, "nobody listens")

	listener := f.stream(t)
	f.listen.Watch(watchOf(t, listener, api.Subscription{Listen: "prices/*"}))
	want(1, "a listener comes: the demand under its prefix")
	f.subscribe(t, b, eur, 1)
	want(2, "a second subscriber")
	f.subscribe(t, c, eur, 1)
	f.subscribe(t, c, api.Subscription{Record: "prices/eur", Path: "x"}, 1)
	f.subscribe(t, a, api.Subscription{Event: "prices/*"}, 1)
	f.subscribe(t, a, api.Subscription{Record: "rates/eur"}, 1)
	want(2, "a third subscriber, a path of a subscribed record, a wildcard, a name under no prefix")

	f.subscribe(t, c, eur, -1)
	f.subscribe(t, c, api.Subscription{Record: "prices/eur", Path: "x"}, -1)
	f.subscribe(t, b, eur, -1)
	time.Sleep(grace / 3) // a write without the grace would be here by now
	want(2, "down to one subscriber, within the grace")
	eventually(3, "down to one subscriber, after the grace")
	last := f.counted.writes[2]
	if last.Count != 1 || last.Stream != a.ID {
		t.Errorf("demand after the grace = %+v, want count 1 of stream %s", last, a.ID)
	}
	f.subscribe(t, a, eur, -1)
	f.subscribe(t, a, eur, 1) // back within the grace
	time.Sleep(2 * grace)
	want(3, "gone and back within the grace")
	f.subscribe(t, a, eur, -1)
	eventually(4, "gone")
	if last := f.counted.writes[3]; last.Count != 0 {
		t.Errorf("last demand = %+v, want count 0", last)
	}
}

// BenchmarkSubscribeDemand measures what an exact subscription costs for
// listening: the hub's hook, and the demand stored (writes/op), when
// nobody listens, when a listener's prefix covers the name (the first
// subscriber of each name), and for the third subscriber of a name under
// a listener's prefix. The time includes Listen storing the demand, on
// the embedded store (in memory).
func BenchmarkSubscribeDemand(b *testing.B) {
	for _, tc := range []struct {
		name     string
		service  bool
		listener bool
		third    bool
	}{
		{"no-listening-service", false, false, false},
		{"nobody-listens", true, false, false},
		{"first-under-a-listener", true, true, false},
		{"third-under-a-listener", true, true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := newListenFixtureWith(b, time.Hour, tc.service)
			s1, s2, s3 := f.stream(b), f.stream(b), f.stream(b)
			if tc.listener {
				f.listen.Watch(watchOf(b, f.stream(b), api.Subscription{Listen: "prices/*"}))
			}
			subs := make([]*sub, b.N)
			for i := range subs {
				subs[i], _ = newSub(api.StreamSub{Subscription: api.Subscription{Record: fmt.Sprintf("prices/%d", i)}})
				if tc.third {
					f.hub.indexOne(s1, subs[i], 1)
					f.hub.indexOne(s2, subs[i], 1)
				}
			}
			f.settle(b)
			before := f.counted.count()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				f.hub.indexOne(s3, subs[i], 1)
			}
			f.settle(b)
			b.StopTimer()
			b.ReportMetric(float64(f.counted.count()-before)/float64(b.N), "writes/op")
		})
	}
}

// TestListenResumedStreamIsOneStream: while a stream's old self is still
// registered next to its resumed self (one id, two *Stream), the stream's
// subscription is its own, not demand by two: its own listener is not
// chosen, and no count of 2 is stored. It used to be counted twice.
func TestListenResumedStreamIsOneStream(t *testing.T) {
	f := newListenFixture(t, time.Millisecond)
	old, resumed := f.stream(t), f.stream(t)
	resumed.ID = old.ID
	eur := api.Subscription{Record: "prices/eur"}
	f.listen.Watch(watchOf(t, old, api.Subscription{Listen: "prices/*"}))
	f.subscribe(t, old, eur, 1)
	f.settle(t)
	f.subscribe(t, resumed, eur, 1)
	f.listen.Watch(watchOf(t, resumed, api.Subscription{Listen: "prices/*"}))
	f.settle(t)
	f.subscribe(t, old, eur, -1)
	time.Sleep(10 * time.Millisecond) // past the grace
	f.settle(t)
	f.counted.mu.Lock()
	writes := slices.Clone(f.counted.writes)
	f.counted.mu.Unlock()
	for _, d := range writes {
		if d.Count != 1 || d.Stream != old.ID {
			t.Errorf("demand stored %+v, want only count 1 of stream %s", d, old.ID)
		}
	}
	cs, err := f.counted.Chosen(t.Context(), "i1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("chosen %+v: the stream's own listener", cs)
	}

	// Another stream's subscription is demand again, and then not.
	other := f.stream(t)
	f.subscribe(t, other, eur, 1)
	f.settle(t)
	if cs, _ := f.counted.Chosen(t.Context(), "i1"); len(cs) != 1 {
		t.Errorf("with another subscriber: chosen %+v, want one", cs)
	}
	f.subscribe(t, other, eur, -1)
	time.Sleep(10 * time.Millisecond)
	f.settle(t)
	if cs, _ := f.counted.Chosen(t.Context(), "i1"); len(cs) != 0 {
		t.Errorf("the other subscriber gone: chosen %+v", cs)
	}
}

// TestListenToggleCoalesces: a client that adds and removes listen=a/*
// thousands of times while the Store is down leaves one listener to add,
// not thousands of calls waiting (each AddListener re-makes the choice of
// every name in demand under the prefix); once the Store is back, the
// listener that stays is added once and told its name.
func TestListenToggleCoalesces(t *testing.T) {
	f := newListenFixture(t, time.Millisecond)
	s, other := f.stream(t), f.stream(t)
	f.subscribe(t, other, api.Subscription{Record: "a/x"}, 1)
	out := &recorder{}
	s.sink = out
	f.counted.down.Store(true)
	listen := api.Subscription{Listen: "a/*"}
	const toggles = 2000
	for range toggles {
		w := watchOf(t, s, listen)
		f.listen.Watch(w)
		f.listen.Unwatch(w)
	}
	last := watchOf(t, s, listen)
	s.subs = append(s.subs, last.x)
	f.listen.Watch(last)
	f.listen.mu.Lock()
	waiting := len(f.listen.pending)
	f.listen.mu.Unlock()
	if waiting > 1 {
		t.Errorf("%d listener changes wait for the store, want 1", waiting)
	}
	f.counted.down.Store(false)
	f.settle(t)
	if n := f.counted.calls.add.Load() + f.counted.calls.remove.Load(); n != 1 {
		t.Errorf("%d listener calls reached the store once it was back, want 1", n)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := s.drainQueue(t.Context()); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.take(), `"name":"a/x","active":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the listener was not told of a/x in 10s")
		}
	}
}

// TestListenGoneBounded: listeners gone while the Store is down wait to be
// removed up to a bound; past it they are let go, and once the Store is
// back every row of this instance's listeners that are not live is
// removed in one call: their names go to the listener that stayed.
func TestListenGoneBounded(t *testing.T) {
	f := newListenFixture(t, time.Millisecond)
	s, other := f.stream(t), f.stream(t)
	f.subscribe(t, other, api.Subscription{Record: "p7/x"}, 1)
	var ws []Watch
	for i := range maxGone + 50 {
		w := watchOf(t, s, api.Subscription{Listen: fmt.Sprintf("p%d/*", i)})
		f.listen.Watch(w)
		ws = append(ws, w)
	}
	f.settle(t)
	// The choice reaches the store after the listeners' rows, on the
	// bus's time: settle may return before it.
	waitFor(t, "p7/x chosen", func() bool {
		cs, _ := f.counted.Chosen(t.Context(), "i1")
		return len(cs) == 1 && cs[0].Name == "p7/x"
	})
	f.counted.down.Store(true)
	for _, w := range ws {
		f.listen.Unwatch(w)
	}
	stays := watchOf(t, s, api.Subscription{Listen: "p7/*"})
	f.listen.Watch(stays)
	f.listen.mu.Lock()
	waiting := len(f.listen.pending)
	f.listen.mu.Unlock()
	if waiting > maxGone+1 {
		t.Errorf("%d listener changes wait for the store, want at most %d", waiting, maxGone+1)
	}
	f.counted.down.Store(false)
	f.settle(t)
	if n := f.counted.calls.except.Load(); n != 1 {
		t.Errorf("%d purges, want 1", n)
	}
	ps, err := f.counted.ListenPrefixes(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ps, []string{"p7/"}) {
		t.Errorf("listened prefixes %q, want only p7/", ps)
	}
	waitFor(t, "p7/x chosen for the listener that stayed", func() bool {
		cs, _ := f.counted.Chosen(t.Context(), "i1")
		return len(cs) == 1 && cs[0].Name == "p7/x" && cs[0].Listener == f.listenerOf(stays)
	})
}

// listenerOf returns the id of w's listener.
func (f *listenFixture) listenerOf(w Watch) string {
	f.listen.mu.Lock()
	defer f.listen.mu.Unlock()
	if li := f.listen.watched[w]; li != nil {
		return li.ID
	}
	return ""
}
