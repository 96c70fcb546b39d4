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

// countingReads is a store that records how many changes each Changes
// call answered.
type countingReads struct {
	api.Store
	mu      sync.Mutex
	answers []int
}

func (s *countingReads) Changes(ctx context.Context, after int64, limit int) ([]api.Change, error) {
	changes, err := s.Store.Changes(ctx, after, limit)
	s.mu.Lock()
	s.answers = append(s.answers, len(changes))
	s.mu.Unlock()
	return changes, err
}

func (s *countingReads) take() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers
	s.answers = nil
	return a
}

// TestCatchUpReadsOncePerCommit: the hub reads the log once for each
// commit it is woken for, not a second time to learn that nothing more
// came (on Postgres every instance would pay that query for every commit),
// and still reads a backlog longer than one batch to its end.
func TestCatchUpReadsOncePerCommit(t *testing.T) {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	counting := &countingReads{Store: store}
	hub := realtime.NewHub(counting, store.Bus(), realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 8 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
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
	counting.take()       // the stream's own reads on opening
	records := realtime.NewRecords(store, realtime.AllowAll{}, 1<<20)
	for i := 1; i <= 5; i++ {
		if _, err := records.Write(ctx, api.User{}, []realtime.Op{{Op: "put", Name: "doc", Data: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
		if got := next(t, frames, true); !strings.HasPrefix(got, "record ") {
			t.Fatalf("frame %q", got)
		}
	}
	if got := counting.take(); fmt.Sprint(got) != "[1 1 1 1 1]" {
		t.Fatalf("reads answered %v, want one change each", got)
	}

	// A backlog of 2,500 events in one batch: three reads, in order.
	batch := make([]api.Write, 2500)
	for i := range batch {
		batch[i] = api.Write{Kind: api.KindEvent, Name: fmt.Sprintf("e/%d", i), Data: []byte(`1`)}
	}
	if _, err := store.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		got := next(t, frames, true)
		if !strings.HasPrefix(got, "event ") || !strings.Contains(got, fmt.Sprintf(`"name":"e/%d"`, i)) {
			t.Fatalf("frame %d: %q", i, got)
		}
	}
	if got := counting.take(); fmt.Sprint(got) != "[1000 1000 500]" {
		t.Fatalf("reads answered %v, want [1000 1000 500]", got)
	}
}
