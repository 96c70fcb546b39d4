package realtime

import (
	"context"
	"errors"
	"sync"

	"github.com/switchboard-dev/switchboard/api"
)

// Limit names a limit of the server by its configuration variable. A
// refusal by a limit carries it as the hidden cause of its *api.Error
// (never shown to the client), so that whoever answers the refusal can
// count it by limit: see LimitOf.
type Limit string

// The limits that refuse requests.
const (
	LimitRate             Limit = "RATE_LIMIT"
	LimitStreamsPerUser   Limit = "MAX_STREAMS_PER_USER"
	LimitStreams          Limit = "MAX_STREAMS"
	LimitSubscriptions    Limit = "MAX_SUBSCRIPTIONS_PER_STREAM"
	LimitRPCInFlight      Limit = "MAX_RPC_IN_FLIGHT_PER_USER"
	LimitRecordBytes      Limit = "MAX_RECORD_BYTES"
	LimitCollectionRecord Limit = "MAX_COLLECTION_RECORDS"
	LimitBodyBytes        Limit = "MAX_BODY_BYTES"
)

func (l Limit) Error() string { return "refused by " + string(l) }

// Refuse returns e with the limit l as its cause.
func (l Limit) Refuse(e *api.Error) *api.Error {
	c := *e
	c.Err = l
	return &c
}

// LimitOf returns the limit that refused err, if a limit did.
func LimitOf(err error) (Limit, bool) {
	var l Limit
	return l, errors.As(err, &l)
}

// slots counts what users hold at once (open streams, RPC calls in
// flight) against a bound per user and a bound in all; 0 is no bound. An
// anonymous user (id "") counts only in all. slots is safe for concurrent
// use.
type slots struct {
	perUser, total int

	mu    sync.Mutex
	n     int
	users map[string]int // only users holding a slot: the map stays as small as what is held
}

// full says which bound refused a slot.
type full int

const (
	roomLeft full = iota
	fullInAll
	fullForUser
)

// take takes a slot for user and returns the function that gives it back
// (once, however many times it is called); or, with a nil function, the
// bound that refuses it.
func (s *slots) take(user string) (func(), full) {
	if f := s.hold(user); f != roomLeft {
		return nil, f
	}
	return sync.OnceFunc(func() { s.give(user) }), roomLeft
}

// hold takes a slot for user, or returns the bound that refuses it. The
// caller gives it back with give, once.
func (s *slots) hold(user string) full {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total > 0 && s.n >= s.total {
		return fullInAll
	}
	if user != "" && s.perUser > 0 && s.users[user] >= s.perUser {
		return fullForUser
	}
	s.n++
	if user != "" {
		if s.users == nil {
			s.users = make(map[string]int)
		}
		s.users[user]++
	}
	return roomLeft
}

// give gives back a slot that hold took for user.
func (s *slots) give(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if user != "" {
		if s.users[user]--; s.users[user] <= 0 {
			delete(s.users, user)
		}
	}
}

// held returns how many slots are held, in all and by user.
func (s *slots) held(user string) (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.users[user]
}

// Open prepares a stream for user with subs, or resumes the stream that
// token (a Last-Event-ID) names. Invalid subscriptions are an error;
// subscriptions that Access refuses become denied frames. A stream
// counts against MAX_STREAMS_PER_USER (signed-in users) and MAX_STREAMS
// from Open until it ends, or until Abandon when it is never served.
func (h *Hub) Open(ctx context.Context, user api.User, subs []api.Subscription, token string) (*Stream, error) {
	// The stream holds its slot with a flag (slot) rather than a
	// function: an idle stream is a few hundred bytes.
	full := h.streamSlots.hold(user.ID)
	if full != roomLeft && h.reap(full, user.ID) {
		full = h.streamSlots.hold(user.ID)
	}
	switch full {
	case fullInAll:
		return nil, LimitStreams.Refuse(api.Errorf(api.CodeUnavailable, "this instance serves at most %d streams: connect again, or to another instance", h.cfg.MaxStreams))
	case fullForUser:
		return nil, LimitStreamsPerUser.Refuse(api.Errorf(api.CodeLimitExceeded, "a user has at most %d open streams on this instance: close one first", h.cfg.MaxStreamsPerUser))
	}
	s, err := h.open(ctx, user, subs, token)
	if err != nil {
		h.streamSlots.give(user.ID)
		return nil, err
	}
	s.slot.Store(true)
	return s, nil
}

// Abandon gives back what Open took for a stream that will never be
// served (its response could not be started). A stream that was served
// gives it back when it ends.
func (s *Stream) Abandon() { s.giveBack() }

// giveBack lets go of the stream's slot, once.
func (s *Stream) giveBack() {
	if s.slot.Swap(false) {
		s.hub.streamSlots.give(s.User.ID)
	}
}

// OpenStreams returns how many streams are open (or opening) on this
// instance, and how many of them user holds.
func (h *Hub) OpenStreams(user string) (all, mine int) { return h.streamSlots.held(user) }

// rpcSlot takes a slot of user's RPC calls in flight, or refuses the call.
func (s *RPC) rpcSlot(user string) (func(), error) {
	release, _ := s.inFlight.take(user)
	if release == nil {
		return nil, LimitRPCInFlight.Refuse(api.Errorf(api.CodeLimitExceeded,
			"a user has at most %d RPC calls in flight on this instance: wait for an answer first", s.cfg.MaxInFlightPerUser))
	}
	return release, nil
}
