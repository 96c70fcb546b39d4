package realtime

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// Permissions on the stream: a stream never carries a frame its user may
// not read.
//
// A subscription is admitted when it opens (admit): a record by its read
// rule, an event by its subscribe rule, presence of one user by its
// presence read rule. A rule that depends on the data (Access.DependsOnData)
// cannot be decided on the name alone: a record's is decided at its
// snapshot, on the value read, and then on every delivered change, which
// the subscription ends (a denied frame) the first time the rule refuses.
// Otherwise one decision holds until the rules change, and deliveries cost
// nothing.
//
// Wildcards are admitted as such and filtered item by item: a collection
// (record=PREFIX/*) by each record's read rule, event=PREFIX/* by each
// event name's subscribe rule, presence=* by each user's presence rule,
// listen=PREFIX/* by each name's listen rule. Decisions that do not depend
// on the data are kept per stream and name (decided); the others are
// evaluated per delivery, in memory: the change's data is decoded once for
// every stream (rules.Values), and a decision is made at most once per
// change and user (token), whatever the number of that user's streams.
//
// record() in a read rule looks the store up. A data-dependent read rule
// with record() therefore costs one evaluation (up to 3 lookups) per
// delivered change and distinct token, never per subscription; rules that
// need it are to keep it out of read rules on busy records.
//
// When the rules change (Hub.RulesChanged), every stream re-admits its
// subscriptions on whoever serves it, denies those no longer allowed, and
// forgets its decisions.

// verdict is a decision kept per stream and name.
type verdict uint8

const (
	vDeny  verdict = iota + 1 // refused, whatever the data
	vAllow                    // allowed, whatever the data
	vData                     // depends on the data: evaluated per delivery
)

// maxDecided bounds the decisions a stream keeps; past it they start over.
const maxDecided = 1024

// decisionKey names what a kept decision is about.
type decisionKey struct {
	sec  Section
	act  Action
	name string
}

// deliveryPerm is what the many streams of one delivery share for their
// checks: the change's values, decoded once (and, in them, the decisions
// that the data alone makes for every user: see rules.Values).
type deliveryPerm struct {
	vals *rules.Values
}

// perm returns the delivery's shared permission state, made on first use.
func (d *delivery) perm() *deliveryPerm {
	if p := d.shared.Load(); p != nil {
		return p
	}
	p := &deliveryPerm{vals: rules.NewValues(d.change.Data, nil)}
	if d.shared.CompareAndSwap(nil, p) {
		return p
	}
	return d.shared.Load()
}

// verdictOf returns the kept decision on act for name, making it when
// there is none.
func (s *Stream) verdictOf(ctx context.Context, sec Section, act Action, name string) verdict {
	k := decisionKey{sec, act, name}
	if v, ok := s.decided[k]; ok {
		return v
	}
	a := s.hub.access
	v := vData
	if !a.DependsOnData(sec, act, name) {
		v = vDeny
		if a.Allow(ctx, Request{User: s.User, Section: sec, Action: act, Name: name}) == nil {
			v = vAllow
		}
	}
	if s.decided == nil || len(s.decided) >= maxDecided {
		s.decided = make(map[decisionKey]verdict)
	}
	s.decided[k] = v
	return v
}

// may reports whether the stream's user may do act on name, with the data
// of delivery d (or data, when d is nil).
func (s *Stream) may(ctx context.Context, sec Section, act Action, name string, d *delivery, data json.RawMessage) bool {
	switch s.verdictOf(ctx, sec, act, name) {
	case vAllow:
		return true
	case vDeny:
		return false
	}
	return s.evaluate(ctx, Request{User: s.User, Section: sec, Action: act, Name: name, Data: data}, d)
}

// evaluate asks Access, with the delivery's values shared by every
// stream when d is set: the change is decoded once, and a rule that the
// data alone decides is evaluated once for all of them.
func (s *Stream) evaluate(ctx context.Context, r Request, d *delivery) bool {
	if d != nil && d.change != nil {
		r.Values = d.perm().vals
	}
	return s.hub.access.Allow(ctx, r) == nil
}

// admit decides whether subscription x may open, and notes whether its
// deliveries are to be checked. A record whose read rule depends on the
// data is admitted here and decided at its snapshot (snapshotAllowed);
// wildcards are admitted and filtered item by item.
func (s *Stream) admit(ctx context.Context, x *sub) bool {
	a := s.hub.access
	var r Request
	switch {
	case x.coll != nil, x.isPrefix, x.Presence == "*", x.Listen != "":
		return true
	case x.Record != "":
		if x.dep = a.DependsOnData(SecRecord, ActRead, x.Record); x.dep {
			return true
		}
		r = Request{Section: SecRecord, Action: ActRead, Name: x.Record}
	case x.Event != "":
		if x.dep = a.DependsOnData(SecEvent, ActSubscribe, x.Event); x.dep {
			return true // each event is decided on its payload
		}
		r = Request{Section: SecEvent, Action: ActSubscribe, Name: x.Event}
	default:
		r = Request{Section: SecPresence, Action: ActPresence, Name: x.Presence}
	}
	r.User = s.User
	return a.Allow(ctx, r) == nil
}

// snapshotAllowed decides a record subscription on the value its snapshot
// read: only a rule that depends on the data is asked again.
func (s *Stream) snapshotAllowed(ctx context.Context, x *sub, rec api.Record) bool {
	if !x.dep {
		return true
	}
	return s.hub.access.Allow(ctx, Request{User: s.User, Section: SecRecord, Action: ActRead, Name: rec.Name, Data: rec.Data}) == nil
}

// gate decides what change d means to subscription x under the rules:
// send its frame, skip it, or end x (end). memo keeps the decision of the
// change for the other subscriptions of the stream (0: not made yet;
// every subscription a change concerns is about the same name).
func (s *Stream) gate(ctx context.Context, x *sub, d *delivery, memo *int8) (send, end bool) {
	ch := d.change
	decide := func(sec Section, act Action) bool {
		if *memo == 0 {
			*memo = -1
			if s.may(ctx, sec, act, ch.Name, d, ch.Data) {
				*memo = 1
			}
		}
		return *memo > 0
	}
	switch {
	case ch.Kind == api.KindEvent:
		if !x.isPrefix && !x.dep {
			return true, false // admitted on its name
		}
		return decide(SecEvent, ActSubscribe), false
	case x.coll != nil:
		return s.gateCollection(ctx, x.coll, d, decide), false
	case !x.dep:
		return true, false // admitted on its name
	case ch.Kind == api.KindDelete:
		return true, false // the subscription could read the value before: it is open
	}
	ok := decide(SecRecord, ActRead)
	return ok, !ok
}

// gateCollection decides a change of a collection's record: a change the
// user may not read is not sent (the record is then hidden, if its rule
// depends on the data), and a delete goes only where the record was not
// hidden.
func (s *Stream) gateCollection(ctx context.Context, c *collection, d *delivery, decide func(Section, Action) bool) bool {
	name := d.change.Name
	if d.change.Kind == api.KindDelete {
		_, hidden := c.hidden[name]
		delete(c.hidden, name)
		return !hidden && s.verdictOf(ctx, SecRecord, ActRead, name) != vDeny
	}
	if decide(SecRecord, ActRead) {
		delete(c.hidden, name)
		return true
	}
	c.hide(name, s.verdictOf(ctx, SecRecord, ActRead, name))
	return false
}

// hide notes that the last value of a collection's record was not sent,
// when that can change with the data (otherwise its kept decision says so).
func (c *collection) hide(name string, v verdict) {
	if v != vData {
		return
	}
	if c.hidden == nil {
		c.hidden = make(map[string]struct{})
	}
	c.hidden[name] = struct{}{}
}

// sideData is what the filter of presence frames reads of their data.
type sideData struct {
	User string `json:"user"`
}

// sideAllowed reports whether a side frame of subscription x may be
// written: presence=* carries only users the stream's user may see. A
// listen frame is always written: the listening service tells a listener
// only of names its user may listen to (Listen.mayListen, with the record's
// value when the rule reads it), and another listener when it may not.
// Other side subscriptions were admitted whole.
func (s *Stream) sideAllowed(x api.Subscription, frame []byte) bool {
	if x.Presence != "*" {
		return true
	}
	var v sideData
	i := bytes.Index(frame, []byte("\ndata: "))
	if i < 0 || json.Unmarshal(frame[i+7:], &v) != nil {
		return false // not a frame of ours: never guess
	}
	ctx := context.Background() // evaluations bound themselves (a deadline, a cost limit)
	return s.may(ctx, SecPresence, ActPresence, v.User, nil, nil)
}

// permDenied encodes the denied frame of a subscription the rules refuse.
func permDenied(x *sub) ([]byte, error) {
	return jsonFrame("denied", deniedData{Subscription: x.Subscription, Code: api.CodePermissionDenied})
}
