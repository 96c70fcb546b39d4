package realtime

import (
	"context"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Demand: the hub tells Listen when the set of this instance's streams
// that subscribe to a record or event name exactly goes between none, one
// and two or more (onDemand). Listen keeps that per name and stores it
// (api.Demand) only for names under a prefix that some listener listens
// on, and only when it changes: subscribing costs no Store write when
// nobody listens, nor for a third subscriber. A decrease is stored
// LeaveGrace later, if it still holds then.

// demandHook is what the hub calls, under its lock, when the number of
// local streams subscribing to a name exactly goes between 0, 1 and 2 or
// more: count is that number, up to 2, and sole the stream's id when it is
// 1. Streams are counted by id: a stream that resumes here while its old
// self is still registered is one stream, not two (it would otherwise be
// demand for its own listeners).
type demandHook func(kind, name string, count int, sole string)

// demandState is this instance's demand for a name: as it is, and as the
// Store has it.
type demandState struct {
	count     int
	sole      string // the stream's id when count is 1
	wrote     int    // as stored: 0 is no row
	wroteSole string
	due       time.Time // when a decrease may be stored
}

// countDemand calls the hub's demand hook, if any, when an index change of
// s's subscriptions moved set (the streams subscribing to the name
// exactly, after the change; before is its size before) between none, one
// and two or more stream ids. Called under h.mu; it allocates nothing, and
// looks at no more than a few streams of the set unless many share an id.
func (h *Hub) countDemand(kind, name string, set map[*Stream]int, s *Stream, before int) {
	if h.demand == nil || len(set) == before {
		return // s was in the set before and after, or in neither
	}
	count, sole := demandOf(set, nil)
	was, wasSole := count, sole
	switch {
	case len(set) > before: // s came: before, the set was the others
		was, wasSole = demandOf(set, s)
	case count == 0: // s left: before, the set was the others and s
		was, wasSole = 1, s.ID
	case count == 1 && sole != s.ID:
		was, wasSole = 2, ""
	}
	if was != count || wasSole != sole {
		h.demand(kind, name, count, sole)
	}
}

// demandOf counts the distinct ids of the streams of set other than skip,
// up to 2, and returns the id when there is one.
func demandOf(set map[*Stream]int, skip *Stream) (count int, sole string) {
	for t := range set {
		switch {
		case t == skip:
		case count == 0:
			count, sole = 1, t.ID
		case t.ID != sole:
			return 2, ""
		}
	}
	return count, sole
}

// onDemand is the hub's demand hook: it records the change and lets Run
// store it. It never blocks and does no I/O (the hub's lock is held).
func (l *Listen) onDemand(kind, name string, count int, sole string) {
	key := api.ListenKey{Kind: kind, Name: name}
	l.mu.Lock()
	st := l.demand[key]
	if st == nil {
		st = &demandState{}
		l.demand[key] = st
	}
	st.count, st.sole = count, sole
	tracked := st.wrote > 0 || key == l.writing || l.covered(name)
	if tracked {
		l.dirty[key] = true
	} else if count == 0 {
		delete(l.demand, key)
	}
	l.mu.Unlock()
	if tracked {
		signal(l.kick)
	}
}

// covered reports whether a listened prefix covers name. Under l.mu.
func (l *Listen) covered(name string) bool {
	for i := strings.IndexByte(name, '/'); i >= 0; {
		if l.prefixes[name[:i+1]] {
			return true
		}
		j := strings.IndexByte(name[i+1:], '/')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return false
}

// markUnder marks the local demand under a newly listened prefix to be
// stored. Under l.mu.
func (l *Listen) markUnder(prefix string) {
	for key, st := range l.demand {
		if st.count > 0 && api.Covers(prefix, key.Name) {
			l.dirty[key] = true
		}
	}
}

// writeDemand stores the demand that changed, and returns when a
// decrease waiting for its grace is due (zero: none).
func (l *Listen) writeDemand(ctx context.Context, w map[string]bool) (next time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]api.ListenKey, 0, len(l.dirty))
	for key := range l.dirty {
		keys = append(keys, key)
	}
	for _, key := range keys {
		st := l.demand[key]
		now := time.Now()
		switch {
		case st == nil:
			delete(l.dirty, key)
			continue
		case st.count == st.wrote && st.sole == st.wroteSole,
			st.wrote == 0 && !l.covered(key.Name):
			st.due = time.Time{}
			delete(l.dirty, key)
			if st.count == 0 {
				delete(l.demand, key)
			}
			continue
		case st.count < st.wrote:
			if st.due.IsZero() {
				st.due = now.Add(l.cfg.LeaveGrace)
			}
			if now.Before(st.due) {
				if next.IsZero() || st.due.Before(next) {
					next = st.due
				}
				continue
			}
		}
		st.due = time.Time{}
		d := api.Demand{ListenKey: key, Instance: l.cfg.Instance, Count: st.count, Stream: st.sole}
		delete(l.dirty, key)
		l.writing = key
		l.mu.Unlock()
		wake, err := l.store.SetDemand(ctx, d, now.Add(l.cfg.TTL), now)
		l.mu.Lock()
		l.writing = api.ListenKey{}
		if err != nil {
			l.log.Warn("listening: store demand", "kind", key.Kind, "name", key.Name, "err", err)
			l.dirty[key] = true
			if t := now.Add(time.Second); next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		for _, i := range wake {
			w[i] = true
		}
		if st = l.demand[key]; st != nil {
			st.wrote, st.wroteSole = d.Count, d.Stream
			if st.count == 0 && st.wrote == 0 {
				delete(l.demand, key)
			}
		}
	}
	return next
}
