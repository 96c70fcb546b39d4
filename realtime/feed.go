package realtime

import (
	"github.com/switchboard-dev/switchboard/api"
)

// Side frames: presence and listen subscriptions are not fed by the change
// log. A Feed serves each kind: it states what holds when a stream
// subscribes, then pushes frames to the stream as things change. Their
// frames carry no id and are not replayed on a resume: a resumed stream
// subscribes again and gets the state anew.
//
// A Watch names one subscription of one stream for as long as it lasts:
// the feed keeps the Watch it was given and pushes through it. A frame is
// written only if that very subscription is still the stream's when its
// turn comes, so that frames queued for a subscription that was removed
// are dropped even if an equal one was added since (that one has a Watch
// of its own, whose state follows the removal).

// Feed serves the presence or the listen subscriptions of this instance's
// streams. Implementations are safe for concurrent use.
type Feed interface {
	// Watch starts feeding w and returns the frames that state what holds
	// now: the stream writes them at once, before any frame pushed after
	// Watch returns. Whoever serves the stream calls it, never under the
	// hub's lock, and maybe on a writer shared by many streams: it must
	// not wait (for the Store or anything else).
	Watch(w Watch) [][]byte
	// Unwatch stops feeding w (equal to the one given to Watch), when the
	// subscription is removed or the stream ends. A Watch that was never
	// watched is ignored.
	Unwatch(w Watch)
}

// Watch is one side subscription of one stream, from Watch to Unwatch.
// It is a small comparable value (feeds may use it as a map key): two
// Watches are equal only if they name the same subscription instance.
type Watch struct {
	s *Stream
	x *sub
}

// Stream returns the watching stream.
func (w Watch) Stream() *Stream { return w.s }

// Subscription returns the subscription watched.
func (w Watch) Subscription() api.Subscription { return w.x.Subscription }

// Push queues a side frame for the subscription. It never blocks: a
// stream whose queue is full is cut, as for any change. The frame is
// written, without an id, only if the stream still has this subscription
// when its turn comes.
func (w Watch) Push(frame []byte) {
	s := w.s
	if s.push(&delivery{frame: frame, size: len(frame), side: w.x}) {
		s.hub.pool.schedule(s)
	}
}

// Observer is told of every stream of this instance: Opened once the hub
// knows it, Closed once it has ended. Both may be called from any
// goroutine, never under the hub's lock.
type Observer interface {
	Opened(s *Stream)
	Closed(s *Stream)
}

// SetPresence makes feed serve presence subscriptions and tells obs of
// every stream. Call it before Run.
func (h *Hub) SetPresence(feed Feed, obs Observer) {
	h.presence, h.observer = feed, obs
}

// SetListen makes feed serve listen subscriptions. Call it before Run.
func (h *Hub) SetListen(feed Feed) { h.listen = feed }

// feedOf returns the feed of a side subscription, or nil for a record or
// event subscription.
func (h *Hub) feedOf(x api.Subscription) Feed {
	switch {
	case x.Presence != "":
		return h.presence
	case x.Listen != "":
		return h.listen
	}
	return nil
}

// checkFeed refuses a side subscription that no feed serves.
func (h *Hub) checkFeed(x api.Subscription) error {
	if (x.Presence != "" || x.Listen != "") && h.feedOf(x) == nil {
		return api.Errorf(api.CodeUnavailable, "presence and listen subscriptions are not available on this server")
	}
	return nil
}

// watch starts the feeds of side subscriptions and writes what they say
// holds now.
func (s *Stream) watch(subs []*sub) error {
	for _, x := range subs {
		f := s.hub.feedOf(x.Subscription)
		if f == nil {
			continue
		}
		for _, frame := range f.Watch(Watch{s, x}) {
			if !s.sideAllowed(x.Subscription, frame) {
				continue
			}
			if err := s.write(0, frame); err != nil {
				return err
			}
		}
	}
	return nil
}

// unwatch stops the feeds of side subscriptions.
func (s *Stream) unwatch(subs []*sub) {
	for _, x := range subs {
		if f := s.hub.feedOf(x.Subscription); f != nil {
			f.Unwatch(Watch{s, x})
		}
	}
}

// deliverSide writes a side frame if the stream still has the
// subscription instance it was pushed for.
func (s *Stream) deliverSide(d *delivery) error {
	for _, x := range s.subs {
		if x == d.side {
			if !s.sideAllowed(x.Subscription, d.frame) {
				return nil
			}
			return s.write(0, d.frame)
		}
	}
	return nil
}

// observe tells the hub's observer, if any, that s opened or closed.
func (h *Hub) observe(s *Stream, opened bool) {
	switch {
	case h.observer == nil:
	case opened:
		h.observer.Opened(s)
	default:
		h.observer.Closed(s)
	}
}
