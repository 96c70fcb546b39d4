package realtime

import (
	"bytes"

	"github.com/switchboard-dev/switchboard/api"
)

// sub is a stream's live subscription, owned by the stream's goroutine.
type sub struct {
	api.StreamSub
	path     *pathSub    // record subscriptions of one path
	pattern  string      // events: the name, or the prefix with its '/'
	coll     *collection // record=PREFIX/* and record=*: a live collection (collection.go)
	isPrefix bool
	dep      bool // its read (or subscribe) rule depends on the data: checked per delivery (streamperm.go)
}

// pathSub is the path of a record subscription of one path, and the value
// last sent at that path: "null" if missing. Apart from sub, so that the
// other subscriptions do not carry it.
type pathSub struct {
	api.Path
	last []byte
}

// ValidateSubscription checks that exactly one kind is set and that its
// name, pattern and path are valid.
func ValidateSubscription(s api.Subscription) error {
	_, err := newSub(api.StreamSub{Subscription: s})
	return err
}

func newSub(s api.StreamSub) (*sub, error) {
	n := 0
	for _, v := range []string{s.Record, s.Event, s.Presence, s.Listen} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return nil, api.Errorf(api.CodeInvalidJSON, "a subscription names exactly one of record, event, presence and listen")
	}
	out := &sub{StreamSub: s}
	switch {
	case s.Record != "":
		prefix, isPrefix, err := api.ValidatePattern(s.Record)
		if err != nil {
			return nil, err
		}
		if isPrefix {
			if s.Path != "" {
				return nil, api.Errorf(api.CodeInvalidPath, "a path goes with a single record, not a collection")
			}
			out.coll = &collection{prefix: prefix}
			return out, nil
		}
		if s.Path != "" {
			p, err := api.ParsePath(s.Path)
			if err != nil {
				return nil, err
			}
			out.path = &pathSub{Path: p}
		}
	case s.Path != "":
		return nil, api.Errorf(api.CodeInvalidPath, "a path goes with a record subscription")
	case s.Event != "":
		var err error
		if out.pattern, out.isPrefix, err = api.ValidatePattern(s.Event); err != nil {
			return nil, err
		}
	case s.Presence != "":
		if s.Presence != "*" {
			if err := api.ValidateUserID(s.Presence); err != nil {
				return nil, err.(*api.Error).With("parameter", "presence")
			}
		}
	default:
		prefix, isPrefix, err := api.ValidatePattern(s.Listen)
		if err != nil {
			return nil, err
		}
		switch {
		case !isPrefix:
			return nil, api.Errorf(api.CodeInvalidName, "listen takes a prefix: %q", s.Listen+"/*")
		case prefix == "":
			return nil, api.Errorf(api.CodeInvalidName, "listen takes a prefix, as in \"chat/*\", not \"*\"")
		}
		out.pattern, out.isPrefix = prefix, true
	}
	return out, nil
}

// concerns reports whether a change is one for this subscription: an
// event it matches, or a change of its record after its snapshot.
func (s *sub) concerns(ch *api.Change) bool {
	if ch.Kind == api.KindEvent {
		return s.Event != "" && s.matchesEvent(ch.Name)
	}
	if s.coll != nil {
		return s.coll.concerns(ch)
	}
	return s.Record == ch.Name && ch.Seq > s.Since
}

// matches reports whether an event name is covered by an event subscription.
func (s *sub) matchesEvent(name string) bool {
	if s.isPrefix {
		return len(name) > len(s.pattern) && name[:len(s.pattern)] == s.pattern
	}
	return s.pattern == name
}

// pathValue returns the canonical JSON at the subscription's path of a
// record value, "null" when it is missing.
func (s *sub) pathValue(data []byte) []byte {
	if data == nil {
		return []byte("null")
	}
	doc, err := api.Decode(data)
	if err != nil {
		return []byte("null")
	}
	v, ok := api.Lookup(doc, s.path.Path)
	if !ok {
		return []byte("null")
	}
	return api.Encode(v)
}

// changed records v as the last value sent and reports whether it differs.
func (s *sub) changed(v []byte) bool {
	if s.path.last != nil && bytes.Equal(s.path.last, v) {
		return false
	}
	s.path.last = v
	return true
}
