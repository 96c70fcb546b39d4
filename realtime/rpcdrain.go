package realtime

import (
	"context"
	"time"
)

// WaitCalls waits until no requester of this instance waits for an
// answer, or ctx ends (then it returns ctx's error). After Drain a call
// waits at most AckTimeout more: the server keeps listening meanwhile, so
// that a provider's answer still reaches it.
func (s *RPC) WaitCalls(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.calls)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
