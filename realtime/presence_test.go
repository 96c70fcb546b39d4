package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// instance is a hub and its presence service, over a store that other
// instances may share.
type instance struct {
	hub      *realtime.Hub
	presence *realtime.Presence
	stop     func() // ends the presence service's Run, and waits for it
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newStore(t *testing.T) *embedded.Store {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// newInstance starts a hub with a presence service on store.
func newInstance(t *testing.T, store *embedded.Store, grace time.Duration) *instance {
	hub := realtime.NewHub(store, store.Bus(), realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, quiet)
	p := realtime.NewPresence(store, store.Bus(), realtime.AllowAll{}, realtime.PresenceConfig{
		Instance: realtime.NewInstanceID(), LeaveGrace: grace, Refresh: 50 * time.Millisecond,
	}, quiet)
	hub.SetPresence(p, p)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, presenceDone := make(chan struct{}), make(chan struct{})
	go func() { hub.Run(ctx); close(hubDone) }()
	pctx, stopPresence := context.WithCancel(context.Background())
	go func() { p.Run(pctx); close(presenceDone) }()
	var once sync.Once
	stop := func() { once.Do(func() { stopPresence(); <-presenceDone }) }
	t.Cleanup(func() { hub.Drain(); stop(); cancel(); <-hubDone })
	return &instance{hub: hub, presence: p, stop: stop}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Flush() error                { return nil }
func (discard) Abort()                      {}

// open opens a stream of user (with no subscription) and returns what
// closes it: once it returns, the stream is closed and uncounted.
func (in *instance) open(t *testing.T, user string) func() {
	s, err := in.hub.Open(context.Background(), api.User{ID: user}, nil, "")
	if err != nil {
		t.Error(err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, discard{}); close(done) }()
	return func() { cancel(); <-done }
}

// watcher is an anonymous stream watching one presence subscription: it
// applies every presence frame to what it knows, and notes any frame that
// does not flip a user's state (a gap or an overlap) after the first one
// for presence=USER.
type watcher struct {
	sub      string
	mu       sync.Mutex
	state    map[string]bool
	frames   []string
	bad      []string
	received chan string
}

func (in *instance) watch(t *testing.T, sub string, serve serveFunc) *watcher {
	t.Helper()
	return in.watchAs(t, api.User{}, sub, serve)
}

// watchAs is watch on a stream of user.
func (in *instance) watchAs(t *testing.T, user api.User, sub string, serve serveFunc) *watcher {
	t.Helper()
	s, err := in.hub.Open(context.Background(), user, []api.Subscription{{Presence: sub}}, "")
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{sub: sub, state: map[string]bool{}, received: make(chan string, 1000)}
	frames := readFrames(serve(t, s))
	if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
		t.Fatalf("first frame %q", got)
	}
	go func() {
		first := sub != "*"
		for f := range frames {
			data, ok := strings.CutPrefix(f, "presence ")
			if !ok {
				continue
			}
			var d struct {
				User   string `json:"user"`
				Online *bool  `json:"online"`
			}
			if err := json.Unmarshal([]byte(data), &d); err != nil || d.Online == nil {
				t.Errorf("frame %q", f)
				continue
			}
			w.mu.Lock()
			if !first && w.state[d.User] == *d.Online {
				w.bad = append(w.bad, fmt.Sprintf("frame %d %s: the watcher had that already", len(w.frames), data))
			}
			first = false
			if *d.Online {
				w.state[d.User] = true
			} else {
				delete(w.state, d.User)
			}
			w.frames = append(w.frames, data)
			w.mu.Unlock()
			w.received <- data
		}
	}()
	return w
}

// known returns the users the watcher knows online.
func (w *watcher) known() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.state))
}

// nextFrame returns the next presence frame's data, or fails after 5s.
func (w *watcher) nextFrame(t *testing.T) string {
	t.Helper()
	select {
	case f := <-w.received:
		return f
	case <-time.After(5 * time.Second):
		t.Fatalf("watcher of %s: no presence frame in 5s", w.sub)
		return ""
	}
}

// noFrame checks that no presence frame comes within d.
func (w *watcher) noFrame(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case f := <-w.received:
		t.Fatalf("watcher of %s: unexpected frame %s", w.sub, f)
	case <-time.After(d):
	}
}

func frame(user string, online bool) string {
	return fmt.Sprintf(`{"user":%q,"online":%v}`, user, online)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

func wantOnline(t *testing.T, p *realtime.Presence, want ...string) {
	t.Helper()
	got, err := p.Online(t.Context(), api.User{ID: "reader"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Online = %q, want %q", got, want)
	}
}

// TestPresenceRace: many goroutines open and close streams of a few users
// while watchers subscribe at random moments. Every watcher's frames flip
// what it knows (its state at subscription and the changes after it meet
// with no gap and no overlap), and it ends knowing the true final state,
// as does the Store.
func TestPresenceRace(t *testing.T) {
	store := newStore(t)
	in := newInstance(t, store, 5*time.Millisecond)
	const churners, rounds, users = 12, 25, 6
	var mu sync.Mutex
	open := map[string]int{}
	var wg sync.WaitGroup
	for i := range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				u := fmt.Sprintf("u%d", rand.IntN(users))
				end := in.open(t, u)
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				if i%4 == 0 && r == rounds-1 {
					mu.Lock()
					open[u]++ // left open
					mu.Unlock()
					return
				}
				end()
			}
		}()
	}
	var watchers []*watcher
	var wmu sync.Mutex
	var ww sync.WaitGroup
	serves := []serveFunc{writers["goroutine"], writers["pool"]}
	for i := range 8 {
		ww.Add(1)
		go func() {
			defer ww.Done()
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
			sub := "*"
			if i%2 == 1 {
				sub = fmt.Sprintf("u%d", i%users)
			}
			w := in.watch(t, sub, serves[i%2])
			wmu.Lock()
			watchers = append(watchers, w)
			wmu.Unlock()
		}()
	}
	wg.Wait()
	ww.Wait()
	want := slices.Sorted(maps.Keys(open))
	if want == nil {
		want = []string{}
	}
	eventually(t, "the Store's online set", func() bool {
		got, err := in.presence.Online(t.Context(), api.User{ID: "reader"}, nil)
		return err == nil && slices.Equal(got, want)
	})
	for _, w := range watchers {
		wantW := want
		if w.sub != "*" {
			wantW = []string{}
			if open[w.sub] > 0 {
				wantW = []string{w.sub}
			}
		}
		eventually(t, fmt.Sprintf("watcher of %s knows %q", w.sub, wantW), func() bool {
			return slices.Equal(w.known(), wantW)
		})
		w.mu.Lock()
		if len(w.bad) > 0 {
			t.Errorf("watcher of %s: %s\nframes: %s", w.sub, strings.Join(w.bad, "; "), strings.Join(w.frames, " "))
		}
		w.mu.Unlock()
	}
}

// TestPresenceLeaveGrace: a user's last stream closed and another opened
// within LEAVE_GRACE causes no frame; closed for good, the user goes
// offline once the grace has passed. Anonymous streams are not presence.
func TestPresenceLeaveGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	in := newInstance(t, newStore(t), grace)
	all := in.watch(t, "*", writers["pool"])
	bob := in.watch(t, "bob", writers["goroutine"])
	if got := bob.nextFrame(t); got != frame("bob", false) {
		t.Fatalf("presence=bob starts with %s", got)
	}

	end := in.open(t, "alice")
	if got := all.nextFrame(t); got != frame("alice", true) {
		t.Fatalf("alice opens: %s", got)
	}
	anon := in.open(t, "")
	end()
	end = in.open(t, "alice") // a resume, within the grace
	all.noFrame(t, 2*grace)
	anon()
	wantOnline(t, in.presence, "alice")

	endBob := in.open(t, "bob")
	for _, w := range []*watcher{all, bob} {
		if got := w.nextFrame(t); got != frame("bob", true) {
			t.Fatalf("watcher of %s: bob opens: %s", w.sub, got)
		}
	}
	endBob()
	closed := time.Now()
	for _, w := range []*watcher{all, bob} {
		if got := w.nextFrame(t); got != frame("bob", false) {
			t.Fatalf("watcher of %s: bob closes: %s", w.sub, got)
		}
	}
	if took := time.Since(closed); took < grace {
		t.Errorf("bob went offline %v after his last stream closed, before the grace (%v)", took, grace)
	}
	end()
	if got := all.nextFrame(t); got != frame("alice", false) {
		t.Fatalf("alice closes: %s", got)
	}
	wantOnline(t, in.presence)
	bob.noFrame(t, 50*time.Millisecond)
}

// TestPresenceInstances: two instances on one store count a user once,
// online while either holds a stream. An instance that stops lets its
// rows expire after LEAVE_GRACE: a user who moved to the other instance
// meanwhile does not flap, and the others go offline.
func TestPresenceInstances(t *testing.T) {
	const grace = 300 * time.Millisecond
	store := newStore(t)
	one, two := newInstance(t, store, grace), newInstance(t, store, grace)
	w1, w2 := one.watch(t, "*", writers["pool"]), two.watch(t, "*", writers["pool"])
	one.open(t, "alice")
	one.open(t, "bob")
	carol := two.open(t, "carol")
	two.open(t, "carol")
	for _, w := range []*watcher{w1, w2} {
		eventually(t, "three users online", func() bool { return slices.Equal(w.known(), []string{"alice", "bob", "carol"}) })
	}
	for len(w1.received) > 0 {
		<-w1.received
	}
	carol() // carol still has a stream on two
	w1.noFrame(t, 2*grace)
	// Instance one stops (its streams would have ended first: its own
	// watcher is fed no more).
	one.stop()
	two.open(t, "alice") // alice moves to instance two within the grace
	eventually(t, "bob offline", func() bool { return slices.Equal(w2.known(), []string{"alice", "carol"}) })
	wantOnline(t, two.presence, "alice", "carol")
	w2.mu.Lock()
	defer w2.mu.Unlock()
	if len(w2.bad) > 0 || len(w2.frames) != 4 {
		t.Errorf("frames %s (%s)", strings.Join(w2.frames, " "), strings.Join(w2.bad, "; "))
	}
}

// stalledOnline is a presence store whose reads of the online set block
// until the test ends, once stalled.
type stalledOnline struct {
	*embedded.Store
	stalled chan struct{} // closed: reads block
	entered chan struct{} // a read blocks
	release chan struct{}
	freed   sync.Once
}

// free lets the blocked read and every one after it through.
func (s *stalledOnline) free() { s.freed.Do(func() { close(s.release) }) }

func (s *stalledOnline) Online(ctx context.Context, now time.Time, users []string) ([]string, error) {
	select {
	case <-s.stalled:
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.release
	default:
	}
	return s.Store.Online(ctx, now, users)
}

// TestPresenceWatchDoesNotWait: a presence subscription gets its state
// from the view at once while the Store does not answer: Watch may run on
// one of the few writers shared by every detached stream, and stalling it
// would freeze them all. It used to wait up to 5 s for a fresh read.
func TestPresenceWatchDoesNotWait(t *testing.T) {
	in, slow := newStalledInstance(t)
	close(slow.stalled)
	<-slow.entered // Run is stuck reading
	for _, serve := range []serveFunc{writers["pool"], writers["goroutine"]} {
		w := in.watch(t, "bob", serve)
		select {
		case got := <-w.received:
			if got != frame("bob", false) {
				t.Fatalf("presence=bob starts with %s", got)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no state within 2 s: the subscription waits for the Store")
		}
	}
}

// TestPresenceOwnStream: a user's own stream finds them online in its
// presence=USER and presence=* states, before the Store has their row (its
// reads are stalled here), and its watchers get that as a change once;
// the read that comes later changes nothing.
func TestPresenceOwnStream(t *testing.T) {
	in, slow := newStalledInstance(t)
	all := in.watch(t, "*", writers["pool"])
	close(slow.stalled)
	<-slow.entered // Run is stuck reading
	for i, serve := range []serveFunc{writers["pool"], writers["goroutine"]} {
		dave := api.User{ID: fmt.Sprintf("dave%d", i)}
		for _, sub := range []string{dave.ID, "*"} {
			w := in.watchAs(t, dave, sub, serve)
			if got := w.nextFrame(t); got != frame(dave.ID, true) && sub == dave.ID {
				t.Errorf("presence=%s on %s's own stream starts with %s", sub, dave.ID, got)
			}
			if got := w.known(); !slices.Contains(got, dave.ID) {
				t.Errorf("presence=%s on %s's own stream knows %q online", sub, dave.ID, got)
			}
		}
		if got := all.nextFrame(t); got != frame(dave.ID, true) {
			t.Errorf("presence=* of another stream got %s, want %s coming online", got, dave.ID)
		}
	}
	slow.free() // reads go through again
	all.noFrame(t, 300*time.Millisecond)
	if all.bad != nil {
		t.Errorf("presence=* got frames that changed nothing: %q", all.bad)
	}
}

// newStalledInstance starts a hub with a presence service whose Store's
// reads of the online set block while stalled is closed, until release
// is.
func newStalledInstance(t *testing.T) (*instance, *stalledOnline) {
	store := newStore(t)
	slow := &stalledOnline{Store: store, stalled: make(chan struct{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	hub := realtime.NewHub(store, store.Bus(), realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, quiet)
	p := realtime.NewPresence(slow, store.Bus(), realtime.AllowAll{}, realtime.PresenceConfig{
		Instance: realtime.NewInstanceID(), Refresh: 20 * time.Millisecond,
	}, quiet)
	hub.SetPresence(p, p)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, presenceDone := make(chan struct{}), make(chan struct{})
	go func() { hub.Run(ctx); close(hubDone) }()
	go func() { p.Run(ctx); close(presenceDone) }()
	t.Cleanup(func() { slow.free(); hub.Drain(); cancel(); <-hubDone; <-presenceDone })
	return &instance{hub: hub, presence: p}, slow
}
