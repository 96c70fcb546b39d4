package realtime

import (
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/api"
)

// Side frames: presence and listen subscriptions are not fed by the change
// log. A Feed serves each kind: it states what holds when a stream
// subscribes, then pushes frames to the stream as things change. Their
// frames carry no id and are not replayed on a resume: a resumed stream
// subscribes again and gets the state anew.

// Feed serves the presence or the listen subscriptions of this instance's
// streams. Implementations are safe for concurrent use.
type Feed interface {
	// Watch starts feeding subscription x of s, and returns the frames
	// that state what holds now: the stream writes them at once, before
	// any frame pushed after Watch returns. Whoever serves the stream
	// calls it, never under the hub's lock.
	Watch(s *Stream, x api.Subscription) [][]byte
	// Unwatch stops feeding x of s, when the subscription is removed or
	// the stream ends. A subscription that was never watched is ignored.
	Unwatch(s *Stream, x api.Subscription)
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

// Push queues a side frame for subscription x of the stream. It never
// blocks: a stream whose queue is full is cut, as for any change. The
// frame is written, without an id, only if the stream still has x when
// its turn comes.
func (s *Stream) Push(frame []byte, x api.Subscription) {
	if s.push(&delivery{frame: frame, size: len(frame), side: x}) {
		s.hub.pool.schedule(s)
	}
}

// watch starts the feeds of side subscriptions and writes what they say
// holds now.
func (s *Stream) watch(subs []*sub) error {
	for _, x := range subs {
		f := s.hub.feedOf(x.Subscription)
		if f == nil {
			continue
		}
		for _, frame := range f.Watch(s, x.Subscription) {
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
			f.Unwatch(s, x.Subscription)
		}
	}
}

// deliverSide writes a side frame if the stream still has its subscription.
func (s *Stream) deliverSide(d *delivery) error {
	for _, x := range s.subs {
		if x.Subscription == d.side {
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

// validUser checks a user id named by a presence subscription: 1-256
// bytes of UTF-8 without control characters.
func validUser(id string) error {
	if id == "" || len(id) > 256 || !utf8.ValidString(id) {
		return api.Errorf(api.CodeInvalidParameter, "a user id is 1-256 bytes of UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return api.Errorf(api.CodeInvalidParameter, "a user id has no control characters")
		}
	}
	return nil
}
