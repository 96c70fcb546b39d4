package realtime_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// countingReads is a store that records how many changes each of the
// hub's Changes calls answered: those made with a context carrying
// hubRead, not a stream's own reads on opening.
type countingReads struct {
	api.Store
	mu      sync.Mutex
	answers []int
}

type hubRead struct{}

func (s *countingReads) Changes(ctx context.Context, after int64, limit int) ([]api.Change, error) {
	changes, err := s.Store.Changes(ctx, after, limit)
	if ctx.Value(hubRead{}) != nil {
		s.mu.Lock()
		s.answers = append(s.answers, len(changes))
		s.mu.Unlock()
	}
	return changes, err
}

func (s *countingReads) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := fmt.Sprint(s.answers)
	s.answers = nil
	return a
}

// noWakes is a bus that never wakes the hub for new changes: the test
// does, with Hub.Wake, so that it knows how many wake-ups there were.
type noWakes struct{ api.Bus }

func (b noWakes) Subscribe(topic string, fn func([]byte)) func() {
	if topic == api.TopicChanges {
		return func() {}
	}
	return b.Bus.Subscribe(topic, fn)
}

// TestCatchUpReadsOncePerWake: woken once, the hub reads the log once,
// not a second time to learn that nothing more came (on Postgres every
// instance would pay that query for every commit), and still reads a
// backlog longer than one batch to its end.
func TestCatchUpReadsOncePerWake(t *testing.T) {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	counting := &countingReads{Store: store}
	hub := realtime.NewHub(counting, noWakes{store.Bus()}, realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 8 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(context.WithValue(ctx, hubRead{}, true)); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Record: "doc"}, {Event: "e/*"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	frames := readFrames(writers["goroutine"](t, s))
	if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
		t.Fatalf("first frame %q", got)
	}
	next(t, frames, true) // the snapshot
	// Run catches up once as it starts, for a change committed before it
	// listened: that read finds nothing.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if got := counting.take(); got == "[0]" {
			break
		} else if got != "[]" || time.Now().After(deadline) {
			t.Fatalf("reads answered %v at start, want [0]", got)
		}
	}

	records := realtime.NewRecords(store, realtime.AllowAll{}, 1<<20)
	for i := 1; i <= 5; i++ {
		if _, err := records.Write(ctx, api.User{}, []realtime.Op{{Op: "put", Name: "doc", Data: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	hub.Wake()
	for v := 1; v <= 5; v++ {
		if got := next(t, frames, true); !strings.Contains(got, fmt.Sprintf(`"version":%d,`, v)) {
			t.Fatalf("frame %q, want version %d", got, v)
		}
	}
	if got := counting.take(); got != "[5]" {
		t.Fatalf("reads answered %v, want [5]", got)
	}

	batch := make([]api.Write, 2500)
	for i := range batch {
		batch[i] = api.Write{Kind: api.KindEvent, Name: fmt.Sprintf("e/%d", i), Data: []byte(`1`)}
	}
	if _, err := store.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	hub.Wake()
	for i := range batch {
		got := next(t, frames, true)
		if !strings.HasPrefix(got, "event ") || !strings.Contains(got, fmt.Sprintf(`"name":"e/%d"`, i)) {
			t.Fatalf("frame %d: %q", i, got)
		}
	}
	if got := counting.take(); got != "[1000 1000 500]" {
		t.Fatalf("reads answered %v, want [1000 1000 500]", got)
	}
}
