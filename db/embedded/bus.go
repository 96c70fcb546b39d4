package embedded

import (
	"context"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

var _ api.Bus = (*Bus)(nil)

// Bus is the Bus of a single instance: Send hands the payload to every
// subscriber of the topic in this process, each through its own mailbox
// (its own goroutine, in order). Bus is safe for concurrent use.
type Bus struct {
	subs mailbox.Registry
}

// NewBus returns an empty Bus.
func NewBus() *Bus { return &Bus{} }

// Send queues payload for every subscriber of topic. It never blocks.
func (b *Bus) Send(_ context.Context, topic string, payload []byte) error {
	b.subs.Push(topic, payload)
	return nil
}

// Subscribe calls fn for every payload sent on topic until cancel is called.
func (b *Bus) Subscribe(topic string, fn func([]byte)) (cancel func()) {
	return b.subs.Add(topic, fn).Cancel
}

// Ready always succeeds: there is no other instance to hear from.
func (b *Bus) Ready(context.Context) error { return nil }
