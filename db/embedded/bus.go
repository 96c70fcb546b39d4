package embedded

import (
	"bytes"
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

// Send queues a copy of payload for every subscriber of topic; it never
// blocks. Payloads larger than mailbox.MaxPayload are refused, as on every
// Bus, with CodePayloadTooLarge.
func (b *Bus) Send(_ context.Context, topic string, payload []byte) error {
	if err := mailbox.CheckSize(topic, payload); err != nil {
		return err
	}
	// A copy: the sender may reuse its buffer once Send returns.
	b.subs.Push(topic, bytes.Clone(payload))
	return nil
}

// Subscribe calls fn for every payload sent on topic until cancel is called.
func (b *Bus) Subscribe(topic string, fn func([]byte)) (cancel func()) {
	return b.subs.Add(topic, fn).Cancel
}

// Ready always succeeds: there is no other instance to hear from.
func (b *Bus) Ready(context.Context) error { return nil }
