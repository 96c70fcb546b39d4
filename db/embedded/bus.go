package embedded

import (
	"context"
	"sync"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

var _ api.Bus = (*Bus)(nil)

// Bus is the Bus of a single instance: Send hands the payload to every
// subscriber of the topic in this process, each through its own mailbox
// (its own goroutine, in order). Bus is safe for concurrent use.
type Bus struct {
	mu   sync.Mutex
	subs map[string][]*mailbox.Mailbox
}

// NewBus returns an empty Bus.
func NewBus() *Bus { return &Bus{subs: make(map[string][]*mailbox.Mailbox)} }

// Send queues payload for every subscriber of topic. It never blocks.
func (b *Bus) Send(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	subs := b.subs[topic]
	b.mu.Unlock()
	for _, m := range subs {
		m.Push(payload)
	}
	return nil
}

// Subscribe calls fn for every payload sent on topic until cancel is called.
func (b *Bus) Subscribe(topic string, fn func([]byte)) (cancel func()) {
	m := mailbox.New(fn)
	b.mu.Lock()
	b.subs[topic] = append(b.subs[topic], m)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		list := b.subs[topic]
		for i, x := range list {
			if x == m {
				b.subs[topic] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		m.Stop()
	}
}

// Ready always succeeds: there is no other instance to hear from.
func (b *Bus) Ready(context.Context) error { return nil }
