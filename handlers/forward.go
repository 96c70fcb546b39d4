package handlers

import (
	"errors"
	"net/http"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/peer"
	"github.com/switchboard-dev/switchboard/realtime"
)

// Sequencer is the lease of the instance whose group commits take every
// instance's writes (db/postgres's Sequencer).
type Sequencer interface {
	// Holder returns where to forward a write and the secret to send with
	// it; ok is false when the write is served here.
	Holder() (url, secret string, ok bool)
	// Unreachable passes over url for a while: a write could not be sent
	// to it, or its answer did not come; and Reached says it answered.
	Unreachable(url string)
	Reached(url string)
	// Holds reports whether this instance is the sequencer.
	Holds() bool
}

// writes applies the writes of requests (records, batches, events): on
// the sequencer when there is one to send them to (PEER_URL, package
// peer), else here. They reach it after authentication, the rate limit
// and the body's limit, which are this instance's to apply.
type writes struct {
	records *realtime.Records
	events  *realtime.Events
	seq     Sequencer // nil: no PEER_URL
	peers   *peer.Client
	metrics *Metrics
}

// write applies a batch of record ops by the request's caller.
func (x *writes) write(r *http.Request, ops []realtime.Op) ([]api.Change, error) {
	user := userFrom(r)
	if changes, sent, err := x.forward(r, func() *peer.Request { return peer.NewRequest(user, ops) }); sent {
		return changes, err
	}
	return x.records.Write(r.Context(), user, ops)
}

// publish publishes an event by the request's caller.
func (x *writes) publish(r *http.Request, name string, payload []byte) (api.Change, error) {
	user := userFrom(r)
	changes, sent, err := x.forward(r, func() *peer.Request { return peer.NewEvent(user, name, payload) })
	if !sent {
		return x.events.Publish(r.Context(), user, name, payload)
	}
	if err != nil {
		return api.Change{}, err
	}
	if len(changes) != 1 {
		return api.Change{}, api.Internal(nil, "the sequencer answered an event with %d changes", len(changes))
	}
	return changes[0], nil
}

// forward sends the write that req builds to the sequencer, if there is
// one, and returns its answer; sent is false when the write is to be
// served here: there is no sequencer to send it to, or it could not be
// sent whole (no link, for one), so the sequencer cannot have applied
// it. One sent whole whose answer did not come is answered 503
// UNAVAILABLE, since it may have been applied. Either failure passes
// the sequencer over for a while, unless it lay with the write (one
// that no frame can carry) or with this instance's links.
func (x *writes) forward(r *http.Request, req func() *peer.Request) (changes []api.Change, sent bool, err error) {
	if x.seq == nil {
		return nil, false, nil
	}
	url, secret, ok := x.seq.Holder()
	if !ok {
		return nil, false, nil
	}
	p := req()
	if st := stateFrom(r); st != nil {
		p.RequestID = st.id
	}
	ans, err := x.peers.Forward(r.Context(), url, secret, p)
	switch {
	case err == nil:
		x.seq.Reached(url)
		x.metrics.forwarded("forwarded")
		changes, err = ans.Result()
		return changes, true, err
	case r.Context().Err() != nil:
		return nil, true, api.Errorf(api.CodeUnavailable, "the client went away before the write was answered")
	case errors.Is(err, peer.ErrNotSent):
		if !errors.Is(err, peer.ErrNotForwardable) {
			x.seq.Unreachable(url)
		}
		x.metrics.forwarded("served_here")
		return nil, false, nil
	}
	x.seq.Unreachable(url)
	x.metrics.forwarded("lost")
	loggerFrom(r).Warn("a forwarded write's answer did not come: answered 503", "sequencer", url, "err", err)
	return nil, true, api.Errorf(api.CodeUnavailable,
		"the write was sent to the instance that commits writes, whose answer did not come; it may have been applied")
}
