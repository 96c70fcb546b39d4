package api

import (
	"context"
	"hash/fnv"
	"strings"
	"time"
)

// Listening (deepstream's listening, for data providers): a stream that
// subscribes with listen=PREFIX/* is told when a record or event name
// under the prefix gets its first subscriber on any instance, and when its
// last one leaves. The state is shared by every instance, in the Store:
//
//   - demand: per instance and name, how many of the instance's streams
//     subscribe to the name exactly (distinct stream ids), counted up to
//     2, and the stream's id when it is 1 (a stream's own subscription is
//     not demand for itself);
//   - listeners: every listen subscription of every instance's streams;
//   - choices: per name, the one listener that is told of it.
//
// Rows of an instance carry an expiry that the instance renews: an
// instance that dies without removing them is forgotten once they expire.
// Every change of demand or listeners re-makes the choice of the names it
// concerns, one decision per name (Choose, under a lock of that name), and
// returns the instances whose listeners must be told something; those
// read their choices (Chosen) and tell the difference. Like the RPC queue,
// a backend compares the times it is given and never reads its own clock.

// ListenKind is the kind of a name in demand: "record" or "event".
const (
	ListenRecord = "record"
	ListenEvent  = "event"
)

// ListenKey is a name of a kind (ListenRecord or ListenEvent).
type ListenKey struct {
	Kind string
	Name string
}

// Demand is one instance's demand for a name: Count is how many of its
// streams (distinct stream ids) subscribe to the name exactly, counted up
// to 2, and Stream is that stream's id when Count is 1. Count 0 is no
// demand.
type Demand struct {
	ListenKey
	Instance string
	Count    int
	Stream   string
}

// Listener is one listen subscription of a stream: it may be told of the
// names under Prefix (which ends with '/').
type Listener struct {
	ID       string // unique among every instance's listeners
	Instance string
	Stream   string
	Prefix   string
}

// Choice is the listener told of a name.
type Choice struct {
	ListenKey
	Listener string // its id
	Instance string // its instance
}

// Listening keeps the demand and the listeners of every instance and
// chooses, for each name in demand, the one listener told of it (see
// Choose). It is safe for concurrent use, from any number of instances;
// every backend passes the db/dbtest Listen suite. Rows whose expiry is
// at or before now do not count. Each method that changes something
// returns the instances whose choices changed (a listener lost a name or
// gained one), each once, in no order.
type Listening interface {
	// SetDemand stores d (Count 0 removes it) until expires and re-makes
	// the choice of its name.
	SetDemand(ctx context.Context, d Demand, expires, now time.Time) (wake []string, err error)
	// AddListener stores l until expires and re-makes the choice of every
	// name under its prefix in demand.
	AddListener(ctx context.Context, l Listener, expires, now time.Time) (wake []string, err error)
	// RemoveListener removes the listener (an unknown id is not an error)
	// and re-makes the choice of the names it had.
	RemoveListener(ctx context.Context, id string, now time.Time) (wake []string, err error)
	// RemoveListenersExcept removes every listener of instance whose id
	// is not in keep, and re-makes the choice of the names they had: what
	// an instance that lost count of the listeners it removed does to
	// catch up at once.
	RemoveListenersExcept(ctx context.Context, instance string, keep []string, now time.Time) (wake []string, err error)
	// RenewListen sets the expiry of every demand and listener of instance.
	RenewListen(ctx context.Context, instance string, expires time.Time) error
	// ExpireListen deletes the rows that expired at or before now and
	// re-makes the choice of every name whose choice is not Choose's:
	// at least those whose listener or demand is gone and those in demand
	// under a listener's prefix with no choice. It repairs what a failed
	// call left.
	ExpireListen(ctx context.Context, now time.Time) (wake []string, err error)
	// DeclineListen notes that listener may not be told of key (its
	// user may not listen to the name) and re-makes the choice of key
	// without it: Choose is given the live listeners that did not decline
	// the name. A decline lasts as long as its listener (RemoveListener,
	// RemoveListenersExcept and expiry drop it) or until ForgetDeclines;
	// that of an unknown listener is not stored and not an error.
	DeclineListen(ctx context.Context, key ListenKey, listener string, now time.Time) (wake []string, err error)
	// ForgetDeclines drops every decline of instance's listeners (the
	// permission rules changed) and re-makes the choice of their names.
	ForgetDeclines(ctx context.Context, instance string, now time.Time) (wake []string, err error)
	// Chosen returns the choices of the listeners of instance.
	Chosen(ctx context.Context, instance string) ([]Choice, error)
	// ListenPrefixes returns the prefixes of the listeners alive at now,
	// each once, in no order: demand for names under none of them need not
	// be stored.
	ListenPrefixes(ctx context.Context, now time.Time) ([]string, error)
}

// Covers reports whether a listen prefix (with its '/') covers name.
func Covers(prefix, name string) bool {
	return len(name) > len(prefix) && strings.HasPrefix(name, prefix)
}

// Choose decides which listener is told of key, given the current choice
// (a listener id, "" for none), every live demand for key and every live
// listener that did not decline key (DeclineListen; those whose prefix
// does not cover key.Name are left out). It is the one rule every backend
// applies:
//
//   - no demand, no listener;
//   - demand by one stream only (every row counts one stream, the same
//     one: a stream resuming on another instance has a row on both for a
//     while) is not demand for that stream's own listeners;
//   - of the listeners left, only those of the longest prefix;
//   - the current one if it is among them (a listener keeps its names),
//     else the one that rendezvous hashing of the name and the listener's
//     id ranks first, so that the names of a prefix spread over its
//     listeners and every instance would pick the same.
func Choose(key ListenKey, current string, demand []Demand, listeners []Listener) (Listener, bool) {
	// only is the one stream of all the demand: every row counts one
	// stream, the same (a stream that resumes on another instance is
	// counted by both for a while).
	rows, only := 0, ""
	for _, d := range demand {
		if d.Count <= 0 {
			continue
		}
		if rows++; rows == 1 {
			only = d.Stream
		}
		if d.Count != 1 || d.Stream != only {
			only = ""
		}
	}
	if rows == 0 {
		return Listener{}, false
	}
	best, found, longest := Listener{}, false, -1
	var rank uint64
	for _, l := range listeners {
		if !Covers(l.Prefix, key.Name) || (only != "" && l.Stream == only) {
			continue
		}
		r := listenRank(key, l.ID)
		switch {
		case len(l.Prefix) > longest:
		case len(l.Prefix) < longest:
			continue
		case best.ID == current:
			continue
		case l.ID != current && r <= rank:
			continue
		}
		best, found, longest, rank = l, true, len(l.Prefix), r
	}
	return best, found
}

// listenRank is a listener's rank for a name in rendezvous hashing.
func listenRank(key ListenKey, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key.Kind))
	h.Write([]byte{0})
	h.Write([]byte(key.Name))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return h.Sum64()
}
