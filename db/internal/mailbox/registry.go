package mailbox

import (
	"slices"
	"sync"
)

// Registry is the half of a Bus that every backend shares: the
// subscriptions by topic, each with its mailbox, their cancel, and the
// hand-out of a payload to the subscriptions of its topic. A backend adds
// only its transport. The zero Registry is empty and ready to use; it is
// safe for concurrent use.
//
// A transport that can lose its connection also keeps here which
// subscriptions are live (their topic is carried by the connection of the
// moment): Lost forgets it, and MarkLive calls every subscription that
// becomes live with nil, since payloads sent before may have been missed.
type Registry struct {
	mu     sync.Mutex
	topics map[string][]*Sub
	closed bool
}

// Sub is one subscription: a mailbox on one topic, or a waker (AddWaker).
// Its fields are guarded by its registry's lock.
type Sub struct {
	mb    *Mailbox    // nil for a waker
	wake  func(int64) // a waker's function
	topic string
	reg   *Registry
	live  bool
	// firstLive is closed once the subscription is first live.
	firstLive chan struct{}
	wasLive   bool
}

// Add subscribes fn to topic: every payload pushed on topic from now on
// is queued for fn, until Cancel. On a closed registry the subscription is
// stopped from the start.
func (r *Registry) Add(topic string, fn func([]byte)) *Sub {
	return r.add(&Sub{mb: New(fn), topic: topic, reg: r, firstLive: make(chan struct{})})
}

// AddWaker subscribes wake to topic without a mailbox: wake is called on
// the goroutine that pushes, with the registry's lock held, for every
// payload pushed (which it does not get: Wake's n, or 0) and wherever a
// subscription would get nil (with 0), until Cancel. So it saves a
// hand-off between goroutines, and must be quick, never block and never
// call the registry: a signal on a buffered channel, say.
func (r *Registry) AddWaker(topic string, wake func(n int64)) *Sub {
	return r.add(&Sub{wake: wake, topic: topic, reg: r, firstLive: make(chan struct{})})
}

func (r *Registry) add(s *Sub) *Sub {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		s.stop()
		return s
	}
	if r.topics == nil {
		r.topics = make(map[string][]*Sub)
	}
	r.topics[s.topic] = append(r.topics[s.topic], s)
	return s
}

// Cancel removes the subscription and stops its mailbox: nothing pushed
// after it reaches fn, and what was queued is dropped (a call under way
// runs to its end: Cancel does not wait for it, so fn may call Cancel).
// Cancel is idempotent.
func (s *Sub) Cancel() {
	r := s.reg
	r.mu.Lock()
	list := r.topics[s.topic]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(r.topics, s.topic)
		} else {
			r.topics[s.topic] = list
		}
	}
	r.mu.Unlock()
	s.stop()
}

// push hands p to the subscription; its registry's lock is held.
func (s *Sub) push(p []byte) {
	if s.mb == nil {
		s.wake(0)
		return
	}
	s.mb.Push(p)
}

// stop stops a mailbox; a waker is not called once removed.
func (s *Sub) stop() {
	if s.mb != nil {
		s.mb.Stop()
	}
}

// Live returns a channel that is closed once the subscription is first
// marked live by MarkLive.
func (s *Sub) Live() <-chan struct{} { return s.firstLive }

// Push queues p for every subscription of topic. It never blocks. The
// subscriptions share p: a handler must not change it.
func (r *Registry) Push(topic string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.topics[topic] {
		s.push(p)
	}
}

// Wake is Push for a payload made only if a subscription of topic has a
// mailbox; wakers get n instead (what the transport tells them, such as a
// position), and no payload.
func (r *Registry) Wake(topic string, n int64, payload func() []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var p []byte
	made := false
	for _, s := range r.topics[topic] {
		switch {
		case s.mb == nil:
			s.wake(n)
		case !made:
			p, made = payload(), true
			fallthrough
		default:
			s.mb.Push(p)
		}
	}
}

// Topics returns the topics that have subscriptions, in no order.
func (r *Registry) Topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	topics := make([]string, 0, len(r.topics))
	for t := range r.topics {
		topics = append(topics, t)
	}
	return topics
}

// Lost says that the transport lost its connection: no subscription is
// live until MarkLive says so again.
func (r *Registry) Lost() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, list := range r.topics {
		for _, s := range list {
			s.live = false
		}
	}
}

// MarkLive marks live every subscription that is not yet live and whose
// topic the transport now carries (carried reports that), and calls it
// with nil: it may have missed payloads, or it is new.
func (r *Registry) MarkLive(carried func(topic string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, list := range r.topics {
		if !carried(t) {
			continue
		}
		for _, s := range list {
			if s.live {
				continue
			}
			s.live = true
			s.push(nil)
			if !s.wasLive {
				s.wasLive = true
				close(s.firstLive)
			}
		}
	}
}

// Close stops every subscription, and those added later.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, list := range r.topics {
		for _, s := range list {
			s.stop()
		}
	}
	r.topics = nil
}
