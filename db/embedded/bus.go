package embedded

import (
	"context"
	"sync"

	"github.com/switchboard-dev/switchboard/api"
)

var _ api.Bus = (*Bus)(nil)

// Bus is the Bus of a single instance: Send calls every handler of the
// topic in this process. Each subscriber has its own goroutine, and a burst
// of sends while it runs is folded into one call when the payload is nil
// (a plain wake-up). Bus is safe for concurrent use.
type Bus struct {
	mu   sync.Mutex
	subs map[string][]*busSub
}

type busSub struct {
	fn     func([]byte)
	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// NewBus returns an empty Bus.
func NewBus() *Bus { return &Bus{subs: make(map[string][]*busSub)} }

// Send queues payload for every subscriber of topic. It never blocks.
func (b *Bus) Send(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	subs := b.subs[topic]
	b.mu.Unlock()
	for _, s := range subs {
		s.push(payload)
	}
	return nil
}

// Subscribe calls fn for every payload sent on topic until cancel is called.
func (b *Bus) Subscribe(topic string, fn func([]byte)) (cancel func()) {
	s := &busSub{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.mu.Lock()
	b.subs[topic] = append(b.subs[topic], s)
	b.mu.Unlock()
	go s.run()
	return func() {
		b.mu.Lock()
		list := b.subs[topic]
		for i, x := range list {
			if x == s {
				b.subs[topic] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		s.closed.Do(func() { close(s.done) })
	}
}

// Ready always succeeds: there is no other instance to hear from.
func (b *Bus) Ready(context.Context) error { return nil }

func (s *busSub) push(p []byte) {
	s.mu.Lock()
	// Consecutive wake-ups carry no information: keep one.
	if !(p == nil && len(s.queue) > 0 && s.queue[len(s.queue)-1] == nil) {
		s.queue = append(s.queue, p)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *busSub) run() {
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, p := range q {
			s.fn(p)
		}
	}
}
