package realtime

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Measures receive what the engine measures, for the metrics and the log
// (handlers builds them). Any of them may be nil. They are called from the
// engine's own goroutines (the fan-out, stream writers, callers of RPC)
// and must be quick and never block.
type Measures struct {
	// StreamEnd is told of every stream of this instance that ends, once,
	// by whoever served it.
	StreamEnd func(StreamEnd)
	// Lag is told, for each change the fan-out dispatches, how long after
	// its commit it was handed to the subscribed streams' queues.
	Lag func(time.Duration)
	// RPCCall is told of each call that was queued: how long its caller
	// waited, and its outcome ("ok", or the error's stable code).
	RPCCall func(d time.Duration, outcome string)
}

// Measure sets the hub's measures; call it before Run.
func (h *Hub) Measure(m Measures) { h.measures = m }

// Measure sets the RPC service's measures; call it before Run.
func (s *RPC) Measure(m Measures) { s.measures = m }

// StreamEnd says what one stream connection did, once it ended.
type StreamEnd struct {
	Stream   string        // the stream's id (the same across its resumes)
	User     string        // its user's id; "" for an anonymous stream
	Duration time.Duration // how long this connection was served
	Frames   int64         // SSE frames written on it
	Bytes    int64         // their bytes (the ready frame and heartbeats left out)
	Reason   string        // why it ended: see endReason
	Err      error         // the error that ended it, or nil for a normal end
}

// Reasons a stream ends, as StreamEnd.Reason says them.
const (
	EndClientGone   = "client_gone"   // the client closed the connection
	EndLifetime     = "lifetime"      // STREAM_MAX_LIFETIME (jittered) passed
	EndTokenExpired = "token_expired" // its user's token expired
	EndDrain        = "drain"         // the server drains (shutdown)
	EndSlow         = "slow_consumer" // its queue overflowed or its socket took nothing
	EndBusy         = "busy"          // subscription changes came faster than it took them
	EndBehind       = "behind"        // the fan-out fell behind the retained log
	EndRevoked      = "revoked"       // its token was revoked
	EndError        = "error"         // a write or read failed, or a frame could not be encoded
)

// opened notes when the stream starts being served; called by register.
func (s *Stream) opened() { s.since = monoNow() }

// ended tells the hub's measures that s ended; called by unregister, on
// the goroutine that served the stream, which owns its counters.
func (h *Hub) ended(s *Stream) {
	if h.measures.StreamEnd == nil {
		return
	}
	h.measures.StreamEnd(StreamEnd{
		Stream: s.ID, User: s.User.ID, Duration: time.Duration(monoNow() - s.since),
		Frames: s.sentFrames + int64(s.frames), Bytes: s.sentBytes,
		Reason: s.endReason(), Err: s.err(),
	})
}

// endReason says why an ended stream ended. A normal end (no error) is a
// drain while the hub drains, the lifetime (or the token's expiry) once
// its deadline has passed, and otherwise the client going away.
func (s *Stream) endReason() string {
	err := s.err()
	if err == nil {
		select {
		case <-s.hub.draining:
			return EndDrain
		default:
		}
		switch {
		case s.deadline == 0 || monoNow() < s.deadline:
			return EndClientGone
		case !s.User.Expires.IsZero() && !time.Now().Before(s.User.Expires):
			return EndTokenExpired
		}
		return EndLifetime
	}
	switch {
	case errors.Is(err, ErrSlow):
		return EndSlow
	case errors.Is(err, errBusy):
		return EndBusy
	case errors.Is(err, errBehind):
		return EndBehind
	case errors.Is(err, errRevoked):
		return EndRevoked
	}
	return EndError
}

// measureCall tells the measures of a call queued at start that ended
// with err.
func (s *RPC) measureCall(start time.Time, err error) {
	if s.measures.RPCCall == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		var e *api.Error
		switch {
		case errors.As(err, &e):
			outcome = string(e.Code)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			outcome = "gone" // the requester went away
		default:
			outcome = string(api.CodeInternal)
		}
	}
	s.measures.RPCCall(time.Since(start), outcome)
}

// Waiting returns the calls of this instance waiting for an answer (their
// part of the RPC queue) and the providers' polls waiting for a request.
func (s *RPC) Waiting() (calls, polls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[chan struct{}]struct{})
	for _, set := range s.polls { // a poll of several names is in several sets
		for wake := range set {
			seen[wake] = struct{}{}
		}
	}
	return len(s.calls), len(seen)
}
