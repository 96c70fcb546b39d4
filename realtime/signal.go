package realtime

import "context"

// Wake-ups. A goroutine that waits for work (the hub's Run, a stream's
// Run, the pool's writers, an RPC call or poll, the reaper) waits on a
// channel of capacity 1, and whoever hands it work signals the channel
// once the work is visible. A signal never blocks, and signals sent while
// one is pending merge into it: the woken goroutine looks at all the work
// there is, not at how many signals came.

// signal wakes whoever waits on c, a channel of capacity 1, without
// blocking.
func signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// waitUntil waits for ready to close, and fails with refused while
// draining is closed: a service refuses new work as soon as it drains,
// even if it was ready.
func waitUntil(ctx context.Context, ready, draining <-chan struct{}, refused error) error {
	select {
	case <-draining:
		return refused
	default:
	}
	select {
	case <-ready:
		return nil
	case <-draining:
		return refused
	case <-ctx.Done():
		return ctx.Err()
	}
}
