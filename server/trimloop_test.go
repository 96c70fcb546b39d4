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
			go trimLoop(ctx, store, time.Hour, maxBytes, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
