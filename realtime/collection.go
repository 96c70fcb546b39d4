package realtime

import (
	"context"
	"slices"
	"strings"

	"github.com/switchboard-dev/switchboard/api"
)

// Live collections: record=PREFIX/* and record=*.
//
// A collection's snapshot is read in pages (api.Store.ListData), so that
// a large one never sits in memory whole. Pages are not read at one log
// position, but each page is at one, which the store returns: the page
// holds every record of its range of names as the log up to that
// position left it. So a change of the log is in the snapshot if and
// only if its position is at or before that of the page whose range
// holds its name; the snapshot and the changes after it meet with no gap
// and no overlap, whatever the records' versions. What this costs is a
// name and a position per page, until the stream passes the position of
// the last page (upTo): every later change is after every page.
//
// The subscription's Since is upTo: a resume point before it (inside the
// window where only the pages tell what the client has) gets a fresh
// snapshot rather than a replay.

// snapshotPage is how many records of a collection are read, written and
// flushed at a time: what a snapshot holds in memory at once.
const snapshotPage = 256

// collection is the state of a live collection subscription, owned by
// whoever serves its stream.
type collection struct {
	prefix string // with its trailing '/'; "" for every record
	base   int64  // changes at or before it are in the snapshot
	upTo   int64  // the position of the last page: later changes are not in the snapshot
	pages  []page // the snapshot's pages, in name order; nil once past upTo
	// hidden holds the records whose last value the user could not read,
	// by a rule on the data: no delete frame goes for them (streamperm.go).
	hidden map[string]struct{}
}

// page is the range of names of one page of a snapshot, and the position
// at which it was read.
type page struct {
	last string // the range ends with this name; "" for the last page, which runs to the end
	pos  int64
}

// concerns reports whether a change of the log is one to deliver: a change
// of a record under the prefix that the snapshot did not include.
func (c *collection) concerns(ch *api.Change) bool {
	if ch.Kind == api.KindEvent || ch.Seq <= c.base || !strings.HasPrefix(ch.Name, c.prefix) {
		return false
	}
	if c.pages != nil {
		if ch.Seq > c.upTo {
			c.pages = nil // every later change is after every page
			return true
		}
		i, _ := slices.BinarySearchFunc(c.pages, ch.Name, func(p page, name string) int {
			if p.last == "" {
				return 1
			}
			return strings.Compare(p.last, name)
		})
		return ch.Seq > c.pages[i].pos
	}
	return true
}

type syncedData struct {
	Record string `json:"record"`
	Count  int    `json:"count"`
}

// countPage is how many names a count reads at a time.
const countPage = 1000

// collectionTooLarge reports whether the collection under prefix holds more than
// the limit of records (MAX_COLLECTION_RECORDS; 0 is no limit). It reads
// names only, never data, and stops past the limit.
func (h *Hub) collectionTooLarge(ctx context.Context, prefix string) (bool, error) {
	limit := h.cfg.MaxCollection
	if limit <= 0 {
		return false, nil
	}
	n, after := 0, ""
	for {
		page, err := h.store.List(ctx, prefix, after, min(countPage, limit+1-n))
		if err != nil {
			return false, err
		}
		n += len(page)
		if n > limit {
			return true, nil
		}
		if len(page) == 0 {
			return false, nil
		}
		after = page[len(page)-1].Name
	}
}

// errCollectionTooLarge is the answer to a GET /stream whose collection
// is over the limit.
func (h *Hub) errCollectionTooLarge(x api.Subscription) error {
	return LimitCollectionRecord.Refuse(api.Errorf(api.CodePayloadTooLarge, "collection %q has more than %d records (MAX_COLLECTION_RECORDS)", x.Record, h.cfg.MaxCollection).
		With("parameter", "record"))
}

// checkCollections refuses, before anything is sent, a new stream with a
// collection over the limit.
func (s *Stream) checkCollections(ctx context.Context) error {
	for _, x := range s.subs {
		if x.coll == nil {
			continue
		}
		over, err := s.hub.collectionTooLarge(ctx, x.coll.prefix)
		if err != nil {
			return err
		}
		if over {
			return s.hub.errCollectionTooLarge(x.Subscription)
		}
	}
	return nil
}

// snapshotCollection writes the snapshot of collection x, read after
// position base, then its synced frame (with an id line of position id
// when id > 0), and sets x.Since. A collection over the limit gets a
// denied frame instead, before any of its snapshots, and is reported as
// gone so that the caller drops it.
func (s *Stream) snapshotCollection(ctx context.Context, x *sub, base, id int64) (gone bool, err error) {
	h := s.hub
	c := x.coll
	switch over, err := h.collectionTooLarge(ctx, c.prefix); {
	case err != nil:
		return false, err
	case over:
		return true, s.writeDenied(x, id)
	}
	c.base, c.upTo, c.pages, c.hidden = base, base, nil, nil
	count, after := 0, ""
	for {
		pos, recs, err := h.store.ListData(ctx, c.prefix, after, snapshotPage)
		if err != nil {
			return false, err
		}
		for _, rec := range recs {
			after = rec.Name
			// A collection never reveals a record its user may not read,
			// nor its name: each record passes its own read rule.
			if !s.may(ctx, SecRecord, ActRead, rec.Name, nil, rec.Data) {
				c.hide(rec.Name, s.verdictOf(ctx, SecRecord, ActRead, rec.Name))
				continue
			}
			frame, err := x.snapshotFrame(rec)
			if err != nil {
				return false, err
			}
			if count++; s.tooLarge(len(frame)) || (h.cfg.MaxCollection > 0 && count > h.cfg.MaxCollection) {
				// Data stored before the limits, or records created since
				// the count: the subscription ends.
				c.pages = nil
				return true, s.writeDenied(x, id)
			}
			if err := s.write(0, frame); err != nil {
				return false, err
			}
		}
		c.upTo = max(c.upTo, pos)
		if len(recs) < snapshotPage {
			c.pages = append(c.pages, page{pos: pos})
			break
		}
		c.pages = append(c.pages, page{last: after, pos: pos})
		if err := s.flushSnapshot(); err != nil {
			return false, err
		}
	}
	x.Since = c.upTo
	if c.upTo == base {
		c.pages = nil // nothing changed meanwhile: nothing to sift
	}
	if id > 0 {
		if err := s.writeID(id); err != nil {
			return false, err
		}
	}
	return false, s.writeJSON("synced", syncedData{Record: x.Record, Count: count})
}

// writeDenied writes the denied frame of a collection over the limit.
func (s *Stream) writeDenied(x *sub, id int64) error {
	frame, err := deniedFrame(x)
	if err != nil {
		return err
	}
	return s.write(id, frame)
}

// spill flushes the frames the stream has gathered once they pass limit
// bytes, so that a start that makes many frames (many subscriptions of
// large records) holds about that much and one frame: a stream that
// starts, or that Run serves, waits for its socket; one in the writer
// pool that the socket leaves above the limit is cut (ErrSlow).
func (s *Stream) spill(limit int) error {
	var n int
	switch w := s.sink.(type) {
	case *detached:
		n = len(w.out)
	case *runSink:
		n = w.pending
	}
	if n <= limit {
		return nil
	}
	return s.flushWithin(limit)
}

// flushSnapshot writes a page of snapshots out. A stream served by its
// own goroutine, or starting on its handler's, waits for the socket; a
// stream served by the writer pool (a collection added to an open
// stream) keeps what the socket does not take, and is cut like any slow
// client once that is more than its buffer.
func (s *Stream) flushSnapshot() error { return s.flushWithin(s.hub.cfg.BufferBytes) }

// flushWithin flushes, and cuts a pooled stream that the socket leaves
// with more than limit bytes to write (ErrSlow).
func (s *Stream) flushWithin(limit int) error {
	if err := s.flush(); err != nil {
		return err
	}
	if s.pooled() && !s.det.blocking && len(s.det.out) > limit {
		return ErrSlow
	}
	return nil
}

// storeSince stores the Since of the collections among subs whose
// snapshot ended after position pos, the resume point that the stream's
// frames give until then: a resume from before it takes a fresh snapshot
// (see above).
func (s *Stream) storeSince(ctx context.Context, subs []*sub, pos int64) error {
	for _, x := range subs {
		if x.coll == nil || x.Since <= pos || !slices.Contains(s.subs, x) {
			continue
		}
		if err := s.hub.store.SetStreamSince(ctx, s.ID, x.StreamSub); err != nil {
			return err
		}
	}
	return nil
}
