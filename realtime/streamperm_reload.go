package realtime

import (
	"context"
	"time"
)

// RulesChanged tells every open stream that the permission rules changed
// (Access answers differently from now on). Each stream, on whoever serves
// it, admits its subscriptions again, ends with a denied frame those no
// longer allowed, and decides anew which deliveries to check. It never
// waits on a stream. A stream opening meanwhile checks on its first
// delivery or at the end of its start.
func (h *Hub) RulesChanged() {
	h.rulesGen.Add(1)
	h.mu.RLock()
	streams := make([]*Stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.RUnlock()
	for _, s := range streams {
		s.notify()
	}
	if l, ok := h.listen.(interface{ rulesChanged() }); ok {
		l.rulesChanged()
	}
}

// checkRules re-admits the stream's subscriptions if the rules changed
// since it last did. Whoever serves the stream calls it.
func (s *Stream) checkRules(ctx context.Context) error {
	g := s.hub.rulesGen.Load()
	if g == s.rulesGen {
		return nil
	}
	s.rulesGen = g
	s.decided = nil
	var gone, data []*sub
	for _, x := range s.subs {
		switch {
		case !s.admit(ctx, x):
			gone = append(gone, x)
		case x.dep && x.Record != "":
			data = append(data, x)
		}
	}
	if len(data) > 0 {
		// Rules on the data are decided on the value the store has now:
		// one read per stream whose subscriptions need it, on a reload.
		names := make([]string, len(data))
		for i, x := range data {
			names[i] = x.Record
		}
		_, recs, err := s.hub.store.Snapshot(ctx, names)
		if err != nil {
			return err
		}
		for i, x := range data {
			if !s.snapshotAllowed(ctx, x, recs[i]) {
				gone = append(gone, x)
			}
		}
	}
	for _, x := range gone {
		frame, err := permDenied(x)
		if err != nil {
			return err
		}
		if err := s.write(0, frame); err != nil {
			return err
		}
	}
	return s.drop(ctx, gone)
}

// refuse ends a subscription added to the open stream that the rules
// refuse: its denied frame, and the stored stream forgets it.
func (s *Stream) refuse(ctx context.Context, x *sub) error {
	frame, err := permDenied(x)
	if err != nil {
		return err
	}
	if err := s.write(0, frame); err != nil {
		return err
	}
	return s.hub.store.RemoveStreamSub(ctx, s.ID, x.Subscription, time.Now())
}
