// Package mailbox is what the Buses of every backend share: the Registry
// of subscriptions by topic, and a Mailbox per subscription that hands its
// payloads to its handler in order, from a goroutine of its own, so that a
// slow handler never holds up whoever delivers (the in-process Bus, or the
// Postgres listener).
package mailbox

import "sync"

// Mailbox queues payloads for one handler. Consecutive nil payloads (plain
// wake-ups, which carry no information) are folded into one. It is safe
// for concurrent use.
type Mailbox struct {
	fn     func([]byte)
	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// New starts a mailbox that calls fn for every payload pushed, until Stop.
func New(fn func([]byte)) *Mailbox {
	m := &Mailbox{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go m.run()
	return m
}

// Push queues p; it never blocks.
func (m *Mailbox) Push(p []byte) {
	m.mu.Lock()
	if !(p == nil && len(m.queue) > 0 && m.queue[len(m.queue)-1] == nil) {
		m.queue = append(m.queue, p)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Stop ends the calls: payloads still queued are dropped, and a call under
// way runs to its end (Stop does not wait for it, so the handler itself may
// call Stop); no other call follows. Stop is idempotent.
func (m *Mailbox) Stop() { m.closed.Do(func() { close(m.done) }) }

func (m *Mailbox) run() {
	for {
		select {
		case <-m.done:
			return
		case <-m.wake:
		}
		m.mu.Lock()
		q := m.queue
		m.queue = nil
		m.mu.Unlock()
		for _, p := range q {
			select {
			case <-m.done:
				return
			default:
			}
			m.fn(p)
		}
	}
}
