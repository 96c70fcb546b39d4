package realtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/switchboard-dev/switchboard/api"
)

// The start of a stream: its ready frame, then either the snapshots of its
// records or, on a resume, every frame it missed.

// start writes the ready frame, then either the snapshots or the frames
// missed since the resume point, and then applies a change of the rules
// made since the stream was opened.
func (s *Stream) start(ctx context.Context) error {
	if err := s.startFrames(ctx); err != nil {
		return err
	}
	s.opening = nil // an open stream keeps nothing of its start
	return s.checkRules(ctx)
}

func (s *Stream) startFrames(ctx context.Context) error {
	store := s.hub.store
	if s.resume {
		if err := s.reconcile(ctx, append(s.Subscriptions(), s.denied...)); err != nil {
			return err
		}
		if err := s.checkResume(ctx); err != nil {
			return err
		}
	}
	if !s.resume {
		pos, err := s.snapshot(ctx, s.subs, true)
		s.lastSeq = pos
		if err != nil {
			return err
		}
		if err := s.storeSince(ctx, s.subs, pos); err != nil {
			return err
		}
		return s.watch(s.subs)
	}
	s.lastSeq = s.after
	if err := s.writeReady(true); err != nil { // the client has every frame up to its resume point
		return err
	}
	var late []*sub // added to the stream after the resume point: the client never had them
	for _, x := range s.subs {
		if x.Record != "" && x.Since > s.after {
			late = append(late, x)
		}
	}
	if len(late) > 0 {
		if _, err := s.snapshot(ctx, late, false); err != nil {
			return err
		}
		if err := s.storeSince(ctx, late, s.after); err != nil {
			return err
		}
	}
	for {
		changes, err := store.Changes(ctx, s.lastSeq, 1000)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			return s.watch(s.subs)
		}
		for i := range changes {
			if err := s.deliver(ctx, &delivery{change: &changes[i]}); err != nil {
				return err
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
	}
}

// checkResume turns a resume point that cannot be resumed from into a
// fresh start of the same stream (its id and stored subscriptions, a reset
// frame and snapshots), with the reason in the reset frame.
//
// Points that the stream never sent are among them. One beyond the log's
// head names changes that do not exist (the head is read from the store,
// which every instance shares, so a point sent by another instance is
// never ahead of it). One before the stream's start would replay changes
// of records that the client has no snapshot of: its records would start
// from whatever version the log has kept.
func (s *Stream) checkResume(ctx context.Context) error {
	store := s.hub.store
	head, _, err := store.Snapshot(ctx, nil)
	if err != nil {
		return err
	}
	switch _, err := store.Changes(ctx, s.after, 1); {
	case s.after > head:
		s.reset = "the resume point is ahead of the change log"
	case s.after < s.begin:
		s.reset = "the resume point is before the start of the stream"
	case errors.Is(err, api.ErrTrimmed):
		s.reset = "the resume point is older than the retention window"
	case err != nil:
		return err
	default:
		return nil
	}
	s.resume = false
	return nil
}

// snapshot reads the records of subs at one position and writes their
// snapshot frames, then the snapshots of its collections (read in pages
// after that position: collection.go), preceded by ready (and reset) when
// first is set. Changes up to that position are then skipped for those
// subscriptions.
func (s *Stream) snapshot(ctx context.Context, subs []*sub, first bool) (int64, error) {
	var names []string
	at := map[string]int{} // a record's index in names: read once for all its subscriptions
	colls, nrecs := 0, 0
	for _, x := range subs {
		switch {
		case x.coll != nil:
			colls++
		case x.Record != "":
			nrecs++
			if _, ok := at[x.Record]; !ok {
				at[x.Record] = len(names)
				names = append(names, x.Record)
			}
		}
	}
	pos, recs, err := s.hub.store.Snapshot(ctx, names)
	if err != nil {
		return 0, err
	}
	if first {
		// The position goes with the last frame of the start (the ready
		// frame when no snapshot follows): a client that loses the
		// connection before it has every snapshot has no id to resume
		// from, and starts over.
		s.lastSeq = pos
		if err := s.writeReady(nrecs == 0 && colls == 0); err != nil {
			return 0, err
		}
	}
	i := 0
	var denied []*sub
	for _, x := range subs {
		if x.Record == "" || x.coll != nil {
			continue
		}
		rec := recs[at[x.Record]]
		i++
		x.Since = pos
		if !s.snapshotAllowed(ctx, x, rec) {
			// A read rule on the data refuses the value: no snapshot.
			frame, err := permDenied(x)
			if err != nil {
				return 0, err
			}
			if first && i == nrecs && colls == 0 {
				if err := s.writeID(pos); err != nil {
					return 0, err
				}
			}
			if err := s.write(0, frame); err != nil {
				return 0, err
			}
			denied = append(denied, x)
			continue
		}
		frame, err := x.snapshotFrame(rec)
		if err != nil {
			return 0, err
		}
		if s.tooLarge(len(frame)) {
			if frame, err = deniedFrame(x); err != nil {
				return 0, err
			}
			denied = append(denied, x)
		}
		if first && i == nrecs && colls == 0 {
			if err := s.writeID(pos); err != nil {
				return 0, err
			}
		}
		if err := s.write(0, frame); err != nil {
			return 0, err
		}
		if err := s.spill(s.hub.cfg.BufferBytes); err != nil {
			return 0, err
		}
	}
	for _, x := range subs {
		if x.coll == nil {
			continue
		}
		var id int64
		if colls--; first && colls == 0 {
			id = pos
		}
		gone, err := s.snapshotCollection(ctx, x, pos, id)
		if err != nil {
			return 0, err
		}
		if gone {
			denied = append(denied, x)
		}
	}
	return pos, s.drop(ctx, denied)
}

// snapshotFrame encodes the snapshot of rec for x, and remembers the value
// sent to a path subscription.
func (x *sub) snapshotFrame(rec api.Record) ([]byte, error) {
	snap := snapshotData{Name: rec.Name, Version: rec.Version, Data: rec.Data}
	if x.path != nil {
		x.path.last = x.pathValue(rec.Data)
		snap.Path, snap.Data = x.path.String(), x.path.last
	}
	frame, err := jsonFrame("snapshot", snap)
	if err != nil {
		return nil, fmt.Errorf("snapshot of record %q: %w", rec.Name, err)
	}
	return frame, nil
}

// writeReady writes retry:, the ready frame (with the stream's position
// as its id when withID is set), and any reset and denied frames.
func (s *Stream) writeReady(withID bool) error {
	var b []byte
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, s.hub.cfg.Retry.Milliseconds(), 10)
	b = append(b, '\n')
	if _, err := s.sink.Write(b); err != nil {
		return err
	}
	if withID {
		if err := s.writeID(s.lastSeq); err != nil {
			return err
		}
	}
	if err := s.writeJSON("ready", readyData{Stream: s.ID, Subscriptions: s.Subscriptions()}); err != nil {
		return err
	}
	if s.reset != "" {
		if err := s.writeJSON("reset", resetData{Reason: s.reset}); err != nil {
			return err
		}
	}
	for _, x := range s.denied {
		if err := s.writeJSON("denied", deniedData{Subscription: x, Code: api.CodePermissionDenied}); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes a frame of v, without an id line.
func (s *Stream) writeJSON(event string, v any) error {
	frame, err := jsonFrame(event, v)
	if err != nil {
		return err
	}
	return s.write(0, frame)
}
