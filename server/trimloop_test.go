package server

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// trims records the calls to Trim.
type trims struct {
	api.Store
	mu    sync.Mutex
	calls []api.TrimOptions
}

func (s *trims) Trim(_ context.Context, o api.TrimOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, o)
	return nil
}

// With a size bound the log is trimmed by size every 5 s and by age every
// minute; without one, by age every minute.
func TestTrimLoop(t *testing.T) {
	for _, maxBytes := range []int64{0, 1 << 30} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			store := &trims{}
			go trimLoop(ctx, store, time.Hour, maxBytes, func(context.Context) {}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			time.Sleep(2*time.Minute + time.Second)
			cancel()
			synctest.Wait()
			var byAge int
			for _, o := range store.calls {
				if o.MaxBytes != maxBytes {
					t.Errorf("Trim(%+v), want MaxBytes %d", o, maxBytes)
				}
				if !o.Before.IsZero() {
					byAge++
					if age := time.Since(o.Before); age < time.Hour || age > time.Hour+2*time.Minute {
						t.Errorf("Trim(%+v) %v ago, want the changes of an hour before it", o, age)
					}
				}
			}
			want := 2
			if maxBytes > 0 {
				want = 24
			}
			if len(store.calls) != want || byAge != 2 {
				t.Errorf("with MaxBytes %d, %d trims in 2 minutes, %d by age; want %d, 2 by age", maxBytes, len(store.calls), byAge, want)
			}
		})
	}
}

// Before a trim by age, the open streams are kept, at least every half
// retention: a stream that is open stays updated within the retention at
// every such trim, however long it lives.
func TestTrimLoopKeepsOpenStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const retention = 8 * time.Minute // trims by age every 1m (retention/4 would be 2m: capped at 1m)
		ctx, cancel := context.WithCancel(t.Context())
		store := &trims{}
		var mu sync.Mutex
		var kept []time.Time
		keep := func(context.Context) {
			mu.Lock()
			defer mu.Unlock()
			kept = append(kept, time.Now())
		}
		start := time.Now()
		go trimLoop(ctx, store, retention, 0, keep, slog.New(slog.NewTextHandler(io.Discard, nil)))
		time.Sleep(30*time.Minute + time.Second)
		cancel()
		synctest.Wait()
		// Kept at the first trim by age (1m), then at the first trim at
		// least retention/2 after the last keep: 5m, 9m, ... 29m.
		if len(kept) != 8 {
			t.Fatalf("kept %d times in 30 minutes, want 8: %v", len(kept), kept)
		}
		last := start
		for _, k := range kept {
			if gap := k.Sub(last); gap >= retention {
				t.Errorf("kept %v after the last keep, want less than the retention %v", gap, retention)
			}
			last = k
		}
		for _, o := range store.calls { // every trim by age comes after a keep within the retention
			if o.Before.IsZero() {
				continue
			}
			var before time.Time
			for _, k := range kept {
				if !k.After(o.Before.Add(retention)) {
					before = k
				}
			}
			if before.IsZero() || !before.After(o.Before) {
				t.Errorf("a trim of the streams not updated since %v, with the last keep at %v", o.Before, before)
			}
		}
	})
}
