package api

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// The RPC queue: requesters enqueue calls, providers claim them with a
// lease, answer, reject or let the lease run out. A request is in one of
// three states:
//
//	pending  --Claim-->            claimed (one provider, one claim id, a lease)
//	claimed  --Answer data/error--> done
//	claimed  --Answer reject-->    pending (a provider that has not had it is registered)
//	                               or done NO_RPC_PROVIDER (none is)
//	claimed  --lease runs out-->   done RPC_TIMEOUT after MaxAttempts leases ran out, else
//	                               pending or done NO_RPC_PROVIDER, as after a reject
//	any      --Cancel, Take, deadline long past--> gone
//
// A reject and a lease that runs out both end a claim without an answer,
// and both ask the same question: is a provider registered that has not
// had the request (neither rejected it nor was presumed dead with it)? If
// not, nobody can ever answer it, and the requester learns so at once
// rather than at its deadline.
//
// The requester waits for done (woken through the Bus), reads the result
// with Take and the request is gone. Every time is the caller's: a backend
// compares the times it is given and never reads its own clock, so that the
// conformance suite can move time by hand.

// TopicRPC is the Bus topic on which an RPCQueue announces, after commit,
// that a request of a name became pending (RPCWake.Name: providers of that
// name should claim) or that a request is done (RPCWake.ID: its requester
// should Take it).
const TopicRPC = "rpc"

// RPCWake is one announcement on TopicRPC: exactly one field is set.
type RPCWake struct {
	Name string // a request of this name is pending
	ID   string // this request is done
}

// Payload encodes w for the Bus: "n:<name>" or "d:<request id>".
func (w RPCWake) Payload() []byte {
	if w.Name != "" {
		return []byte("n:" + w.Name)
	}
	return []byte("d:" + w.ID)
}

// ParseRPCWake decodes a payload of TopicRPC.
func ParseRPCWake(p []byte) (RPCWake, bool) {
	s := string(p)
	if name, ok := strings.CutPrefix(s, "n:"); ok && name != "" {
		return RPCWake{Name: name}, true
	}
	if id, ok := strings.CutPrefix(s, "d:"); ok && id != "" {
		return RPCWake{ID: id}, true
	}
	return RPCWake{}, false
}

// RPCCall is a request as its requester enqueues it.
type RPCCall struct {
	// ID identifies the request for its requester (Take, Cancel); chosen by
	// the caller, unique. Providers never see it.
	ID        string
	Name      string
	Data      json.RawMessage
	Requester string // the requester's user id, empty for an anonymous user
	// Deadline is when the requester stops waiting: the request is never
	// handed out after it, and Expire deletes it once it has passed.
	Deadline time.Time
	// MaxAttempts is how many claims of the request may run out (their
	// provider presumed dead) before it is done with RPC_TIMEOUT; at least 1.
	MaxAttempts int
}

// RPCClaim is a provider's ask for work.
type RPCClaim struct {
	// Provider identifies the provider: a request is never handed twice to
	// the same provider, and a reject goes to another one.
	Provider string
	Names    []string
	Max      int           // at most this many requests; at least 1
	Lease    time.Duration // how long the provider has to answer, renewed by each answer
	// Until is how long the claim registers Provider as a provider of
	// Names, as Register does.
	Until time.Time
}

// RPCRequest is a request as a provider claims it; its JSON is the public
// form of GET /rpc-requests.
type RPCRequest struct {
	// ID is the claim's id: the provider answers with it. It is unguessable
	// and new for every claim, so an id from an earlier claim of the same
	// request (a provider presumed dead) or from another provider's claim
	// never answers it.
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data"`
	Deadline  time.Time       `json:"deadline"`
	Requester string          `json:"requester"`
}

// RPCAnswer is a provider's answer: exactly one of Data (a result, any
// JSON), Error (a message for the requester) and Reject (hand the request
// to a provider that has not had it).
type RPCAnswer struct {
	Data   json.RawMessage
	Error  string
	Reject bool
}

// RPCResult is how a request ended: Data when Code is empty; otherwise
// Code is CodeRPCError (Message is the provider's), CodeNoRPCProvider
// (every registered provider rejected it or was presumed dead with it) or
// CodeRPCTimeout (MaxAttempts claims ran out).
type RPCResult struct {
	Data    json.RawMessage
	Code    Code
	Message string
}

// RPCQueue is the RPC request queue shared by every instance. It is safe
// for concurrent use; every backend passes the db/dbtest RPC suite. Calls
// that change what providers or requesters wait for announce it on
// TopicRPC after they commit: Enqueue and a requeue (reject, lease run out)
// announce the name, a request becoming done announces its id.
type RPCQueue interface {
	// Register records provider as a provider of names until until (a later
	// time than it has; never earlier).
	Register(ctx context.Context, provider string, names []string, until time.Time) error
	// Enqueue adds a pending request if a provider of its name is registered
	// beyond now; otherwise it returns NO_RPC_PROVIDER and adds nothing.
	Enqueue(ctx context.Context, c RPCCall, now time.Time) error
	// Claim registers the provider (as Register until c.Until), then hands
	// it up to c.Max pending requests of c.Names that it has never had and
	// whose deadline is after now, oldest first, each with a new claim id
	// and a lease until now+c.Lease. It returns none when there is no work.
	Claim(ctx context.Context, c RPCClaim, now time.Time) ([]RPCRequest, error)
	// Answer takes the answer for the claim id while its lease runs (now
	// before its end), and renews the leases of the other claims of the
	// same provider. An unknown, answered or expired claim id is NOT_FOUND.
	// A reject makes the request pending again when a provider that has not
	// had it is registered beyond now, and done with NO_RPC_PROVIDER when none is.
	Answer(ctx context.Context, id string, a RPCAnswer, now time.Time) error
	// Take returns the result of a done request and deletes it; ok is false
	// while it is not done. An unknown request is NOT_FOUND.
	Take(ctx context.Context, id string) (r RPCResult, ok bool, err error)
	// Cancel deletes a request in any state, so that its claim can no longer
	// be answered. If it was done, its result comes back with ok true. An
	// unknown request is not an error.
	Cancel(ctx context.Context, id string) (r RPCResult, ok bool, err error)
	// Expire ends the claims whose lease ended at or before now: the request
	// is done with RPC_TIMEOUT when it has run out MaxAttempts leases;
	// otherwise, as after a reject, pending again when a provider that has
	// not had it is registered beyond now, and done with NO_RPC_PROVIDER
	// when none is. It deletes requests whose deadline is before
	// now and registrations that ended before now. It returns the end of
	// the earliest lease still running (zero when none), when it should run next.
	Expire(ctx context.Context, now time.Time) (next time.Time, err error)
}
