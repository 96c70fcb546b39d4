package realtime_test

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// headWakes is a bus that says which position it announces, as
// Postgres's does (SubscribeWake); the test announces, with wake.
type headWakes struct {
	noWakes
	mu   sync.Mutex
	wake func(head int64)
}

func (b *headWakes) SubscribeWake(topic string, wake func(head int64)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic == api.TopicChanges {
		b.wake = wake
	}
	return func() {}
}

func (b *headWakes) announce(head int64) {
	b.mu.Lock()
	wake := b.wake
	b.mu.Unlock()
	if wake != nil {
		wake(head)
	}
}

// setDoc writes a record with Store.Write, bypassing the services, and
// returns its position.
func setDoc(ctx context.Context, t *testing.T, store api.Store, name string, v int) int64 {
	data := json.RawMessage(strconv.Itoa(v))
	changes, err := store.Write(ctx, []api.Write{{Kind: api.KindSet, Name: name,
		Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil }}})
	if err != nil {
		t.Error(err)
		return 0
	}
	return changes[0].Seq
}

var versionRE = regexp.MustCompile(`"version":(\d+)`)

func frameVersion(frame string) int {
	m := versionRE.FindStringSubmatch(frame)
	if m == nil {
		return -1
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// TestIdleHubReadsNothing: a hub whose streams subscribe to nothing the
// log carries does not read the changes it is told of (on Postgres every
// idle instance would pay that for every commit); a stream opened later
// starts after them and gets what follows.
func TestIdleHubReadsNothing(t *testing.T) {
	store := openStore(t)
	counting := &countingReads{Store: store}
	bus := &headWakes{noWakes: noWakes{store.Bus()}}
	hub := plainHub(counting, bus)
	ctx := t.Context()
	runCtx, cancel := context.WithCancel(context.WithValue(ctx, hubRead{}, true))
	done := make(chan struct{})
	go func() { hub.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(5 * time.Second); counting.take() != "[0]"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no catch-up at start")
		}
	}

	var head int64
	for v := 1; v <= 3; v++ {
		head = setDoc(ctx, t, store, "doc", v)
	}
	bus.announce(head)

	s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Record: "doc"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	frames := readFrames(writers["goroutine"](t, s))
	if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
		t.Fatalf("first frame %q", got)
	}
	if got := next(t, frames, true); frameVersion(got) != 3 {
		t.Fatalf("snapshot %q, want version 3", got)
	}
	bus.announce(setDoc(ctx, t, store, "doc", 4))
	if got := next(t, frames, true); frameVersion(got) != 4 {
		t.Fatalf("frame %q, want version 4", got)
	}
	if got := counting.take(); got != "[1]" {
		t.Fatalf("the hub's reads answered %v, want [1]: the changes before the stream are not read", got)
	}
}

// TestIdleHubRace races streams that open and end, so that the hub goes
// from idle (it skips what it is told of) to subscribed and back, against
// a writer: every stream gets its snapshot, then every version after it,
// in order, none twice and none missed. Half of them open with nothing
// and subscribe once open.
func TestIdleHubRace(t *testing.T) {
	store := openStore(t)
	bus := &headWakes{noWakes: noWakes{store.Bus()}}
	hub := plainHub(store, bus)
	ctx := runHub(t, hub)

	written := make(chan struct{})
	go func() {
		defer close(written)
		for v := 1; v <= raceVersions; v++ {
			head := setDoc(ctx, t, store, "doc", v)
			bus.announce(head)
			if v%4 == 0 {
				hub.Wake() // a wake-up without a position, as after a gap
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for opened := 0; ; opened++ {
				select {
				case <-written:
					if opened > 0 {
						return
					}
				default:
				}
				if !followOnce(t, hub, i%2 == 1) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// raceVersions is how many versions TestIdleHubRace writes.
const raceVersions = 400

// followOnce opens a stream on "doc" (later, an empty stream subscribes
// to it), checks its snapshot and the next few versions, and ends it;
// false after a failure.
func followOnce(t *testing.T, hub *realtime.Hub, later bool) bool {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	subs := []api.Subscription{{Record: "doc"}}
	if later {
		subs = nil
	}
	s, err := hub.Open(ctx, api.User{}, subs, "")
	if err != nil {
		t.Error(err)
		return false
	}
	r, w := io.Pipe()
	ran := make(chan struct{})
	go func() {
		w.CloseWithError(s.Run(ctx, &pipeSink{w: w}))
		close(ran)
	}()
	defer func() { cancel(); r.Close(); <-ran }()
	frames := readFrames(r)
	wait := func() (string, bool) {
		for {
			select {
			case f, ok := <-frames:
				if f == "ping" {
					continue
				}
				return f, ok
			case <-time.After(5 * time.Second):
				return "", false
			}
		}
	}
	if f, ok := wait(); !ok || !strings.HasPrefix(f, "ready ") {
		t.Errorf("first frame %q", f)
		return false
	}
	if later {
		if err := hub.ChangeSubscription(ctx, api.User{}, s.ID, api.Subscription{Record: "doc"}, true); err != nil {
			t.Error(err)
			return false
		}
	}
	f, ok := wait()
	last := frameVersion(f)
	if !ok || (last < 0 && !strings.Contains(f, `"exists":false`)) {
		t.Errorf("snapshot %q", f)
		return false
	}
	for range 3 {
		if last == raceVersions {
			return true
		}
		f, ok := wait()
		if v := frameVersion(f); !ok || v != max(last, 0)+1 {
			t.Errorf("after version %d, frame %q (ok %v): want version %d", last, f, ok, max(last, 0)+1)
			return false
		}
		last++
	}
	return true
}
