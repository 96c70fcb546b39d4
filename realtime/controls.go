package realtime

import (
	"context"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Subscription changes of an open stream, applied by whoever serves it.

// maxControls bounds the subscription changes waiting for one stream.
const maxControls = 64

// control hands a subscription change to the stream's goroutine. A stream
// too busy to take it is cut: on resume it reads its subscriptions anew.
func (s *Stream) control(c streamChange) {
	s.mu.Lock()
	full := len(s.ctrl) >= maxControls
	if !full {
		s.ctrl = append(s.ctrl, c)
	}
	s.mu.Unlock()
	if full {
		s.end(errBusy)
		return
	}
	s.notify()
}

// applyControls applies a change of the rules, then the waiting
// subscription changes, in order.
func (s *Stream) applyControls(ctx context.Context) error {
	if err := s.checkRules(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	ctrl := s.ctrl
	s.ctrl = nil
	s.mu.Unlock()
	for _, c := range ctrl {
		if err := s.apply(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// apply adds or removes a subscription of the running stream.
func (s *Stream) apply(ctx context.Context, c streamChange) error {
	for i, x := range s.subs {
		if x.Subscription == c.Sub {
			if !c.Add {
				s.hub.indexOne(s, x, -1)
				s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
				s.unwatch([]*sub{x})
			}
			return nil
		}
	}
	if !c.Add {
		return nil
	}
	x, err := newSub(api.StreamSub{Subscription: c.Sub})
	if err != nil {
		return nil // validated by the sender; nothing to do
	}
	if !s.admit(ctx, x) {
		return s.refuse(ctx, x)
	}
	s.hub.indexOne(s, x, 1)
	s.subs = append(s.subs, x)
	if x.Record == "" {
		return s.watch([]*sub{x})
	}
	if _, err := s.snapshot(ctx, []*sub{x}, false); err != nil {
		return err
	}
	// Remember where the snapshot stands (for a collection, where its
	// last page was read), so that a resume from before it sends a fresh
	// one instead of replaying older versions (unless the subscription was
	// removed meanwhile: that stays so).
	return s.hub.store.SetStreamSince(ctx, s.ID, api.StreamSub{Subscription: c.Sub, Since: x.Since})
}

// touch records when the stream was last open, for retention.
func (s *Stream) touch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.hub.store.TouchStream(ctx, s.ID, time.Now())
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		s.hub.log.Warn("store stream state", "stream", s.ID, "err", err)
	}
}

// reconcile brings a resumed stream up to date with its stored
// subscriptions once it is registered. A change made from elsewhere after
// Open read them and before the hub knew the stream found no stream to
// tell: it is queued here like any other change. A change sent after
// registering arrives on its own; applying one twice does nothing.
func (s *Stream) reconcile(ctx context.Context, read []api.Subscription) error {
	info, err := s.hub.store.GetStream(ctx, s.ID)
	if err != nil {
		return err
	}
	stored := make(map[api.Subscription]bool, len(info.Subs))
	for _, x := range info.Subs {
		stored[x.Subscription] = true
		if !slices.Contains(read, x.Subscription) {
			s.control(streamChange{Stream: s.ID, Add: true, Sub: x.Subscription})
		}
	}
	for _, x := range read {
		if !stored[x] {
			s.control(streamChange{Stream: s.ID, Sub: x})
		}
	}
	return nil
}
