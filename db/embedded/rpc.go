package embedded

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

var _ api.RPCQueue = (*RPCQueue)(nil)

// RPCQueue is the embedded api.RPCQueue. It lives in memory: a request
// waits for an answer for at most a minute, and its requester is held by
// this very process, so a restart loses nothing that anyone still waits
// for. Announcements go to the in-process Bus. RPCQueue is safe for
// concurrent use; one mutex guards everything, and no call holds it longer
// than a scan of one name's pending requests.
type RPCQueue struct {
	bus api.Bus

	mu       sync.Mutex
	seq      uint64
	reqs     map[string]*rpcReq              // by request id
	claims   map[string]*rpcReq              // by claim id
	pending  map[string][]*rpcReq            // by name, in enqueue order
	held     map[string]map[*rpcReq]struct{} // claimed requests by provider
	register map[string]map[string]time.Time // by name: provider -> until
}

type rpcReq struct {
	call     api.RPCCall
	seq      uint64
	tried    map[string]struct{} // providers that have had it
	expired  int                 // claims whose lease ran out
	claim    string              // the live claim id, or ""
	provider string              // who holds the live claim
	lease    time.Duration
	until    time.Time // the live claim's lease end
	done     bool
	result   api.RPCResult
}

// NewRPCQueue returns an empty queue that announces on bus.
func NewRPCQueue(bus api.Bus) *RPCQueue {
	return &RPCQueue{
		bus:      bus,
		reqs:     make(map[string]*rpcReq),
		claims:   make(map[string]*rpcReq),
		pending:  make(map[string][]*rpcReq),
		held:     make(map[string]map[*rpcReq]struct{}),
		register: make(map[string]map[string]time.Time),
	}
}

// Register records provider for names until until, never shortening.
func (q *RPCQueue) Register(_ context.Context, provider string, names []string, until time.Time) error {
	q.mu.Lock()
	q.registerLocked(provider, names, until)
	q.mu.Unlock()
	return nil
}

func (q *RPCQueue) registerLocked(provider string, names []string, until time.Time) {
	for _, n := range names {
		m := q.register[n]
		if m == nil {
			m = make(map[string]time.Time)
			q.register[n] = m
		}
		if until.After(m[provider]) {
			m[provider] = until
		}
	}
}

// registered reports whether a provider of name not in skip is registered
// beyond now.
func (q *RPCQueue) registered(name string, skip map[string]struct{}, now time.Time) bool {
	for p, until := range q.register[name] {
		if _, ok := skip[p]; !ok && until.After(now) {
			return true
		}
	}
	return false
}

// Enqueue adds a pending request, or says NO_RPC_PROVIDER.
func (q *RPCQueue) Enqueue(ctx context.Context, c api.RPCCall, now time.Time) error {
	q.mu.Lock()
	if !q.registered(c.Name, nil, now) {
		q.mu.Unlock()
		return api.Errorf(api.CodeNoRPCProvider, "no provider for rpc %q", c.Name)
	}
	q.seq++
	r := &rpcReq{call: c, seq: q.seq, tried: make(map[string]struct{})}
	q.reqs[c.ID] = r
	q.pending[c.Name] = append(q.pending[c.Name], r)
	q.mu.Unlock()
	return q.bus.Send(ctx, api.TopicRPC, api.RPCWake{Name: c.Name}.Payload())
}

// Claim registers the provider and hands it the oldest requests it may have.
func (q *RPCQueue) Claim(_ context.Context, c api.RPCClaim, now time.Time) ([]api.RPCRequest, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.registerLocked(c.Provider, c.Names, c.Until)
	var picked []*rpcReq
	for _, n := range c.Names {
		for _, r := range q.pending[n] {
			if _, had := r.tried[c.Provider]; had || !r.call.Deadline.After(now) {
				continue
			}
			picked = append(picked, r)
		}
	}
	if len(picked) == 0 {
		return nil, nil
	}
	slices.SortFunc(picked, func(a, b *rpcReq) int { return cmp.Compare(a.seq, b.seq) })
	picked = picked[:min(len(picked), max(c.Max, 1))]
	out := make([]api.RPCRequest, len(picked))
	for i, r := range picked {
		q.unqueue(r)
		r.claim, r.provider, r.lease, r.until = newClaimID(), c.Provider, c.Lease, now.Add(c.Lease)
		r.tried[c.Provider] = struct{}{}
		q.claims[r.claim] = r
		q.hold(r)
		out[i] = api.RPCRequest{ID: r.claim, Name: r.call.Name, Data: r.call.Data,
			Deadline: r.call.Deadline, Requester: r.call.Requester}
	}
	return out, nil
}

// Answer takes an answer for a live claim.
func (q *RPCQueue) Answer(ctx context.Context, id string, a api.RPCAnswer, now time.Time) error {
	q.mu.Lock()
	r := q.claims[id]
	if r == nil || !r.until.After(now) {
		q.mu.Unlock()
		return api.Errorf(api.CodeNotFound, "rpc request %q is unknown, expired or already answered", id)
	}
	provider := r.provider
	q.release(r)
	// Answering proves the provider alive: its other claims start afresh.
	for o := range q.held[provider] {
		if o.until.After(now) {
			o.until = now.Add(o.lease)
		}
	}
	wake := api.RPCWake{ID: r.call.ID}
	switch {
	case a.Reject:
		wake = q.passOn(r, now)
	case a.Data != nil:
		q.finish(r, api.RPCResult{Data: a.Data})
	default:
		q.finish(r, api.RPCResult{Code: api.CodeRPCError, Message: a.Error})
	}
	q.mu.Unlock()
	return q.bus.Send(ctx, api.TopicRPC, wake.Payload())
}

// Take returns and deletes a done request's result.
func (q *RPCQueue) Take(_ context.Context, id string) (api.RPCResult, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.reqs[id]
	switch {
	case r == nil:
		return api.RPCResult{}, false, api.Errorf(api.CodeNotFound, "rpc request %q does not exist", id)
	case !r.done:
		return api.RPCResult{}, false, nil
	}
	delete(q.reqs, id)
	return r.result, true, nil
}

// Cancel deletes a request in any state.
func (q *RPCQueue) Cancel(_ context.Context, id string) (api.RPCResult, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.reqs[id]
	if r == nil {
		return api.RPCResult{}, false, nil
	}
	q.drop(r)
	return r.result, r.done, nil
}

// Expire ends the leases that ran out and deletes what is past its time.
func (q *RPCQueue) Expire(ctx context.Context, now time.Time) (time.Time, error) {
	q.mu.Lock()
	wakes, next := q.endLeases(now)
	for _, r := range q.reqs {
		if r.call.Deadline.Before(now) {
			q.drop(r)
		}
	}
	for name, m := range q.register {
		for p, until := range m {
			if until.Before(now) {
				delete(m, p)
			}
		}
		if len(m) == 0 {
			delete(q.register, name)
		}
	}
	q.mu.Unlock()
	for _, w := range wakes {
		if err := q.bus.Send(ctx, api.TopicRPC, w.Payload()); err != nil {
			return next, err
		}
	}
	return next, nil
}

// endLeases ends the claims whose lease ended at or before now: passed on
// as after a reject (NO_RPC_PROVIDER when nobody is left), or done with
// RPC_TIMEOUT after MaxAttempts of them while a provider that has not had
// the request is left.
// It returns the announcements and the end of the earliest lease still
// running.
func (q *RPCQueue) endLeases(now time.Time) (wakes []api.RPCWake, next time.Time) {
	for _, r := range q.claims {
		if r.until.After(now) {
			if next.IsZero() || r.until.Before(next) {
				next = r.until
			}
			continue
		}
		q.release(r)
		if r.expired++; r.expired >= max(r.call.MaxAttempts, 1) && q.registered(r.call.Name, r.tried, now) {
			q.finish(r, api.RPCResult{Code: api.CodeRPCTimeout})
			wakes = append(wakes, api.RPCWake{ID: r.call.ID})
		} else {
			wakes = append(wakes, q.passOn(r, now))
		}
	}
	return wakes, next
}

// passOn decides the fate of a request whose claim ended without an
// answer, rejected or presumed dead alike: pending again when a provider
// that has not had it is registered beyond now, else done with
// NO_RPC_PROVIDER, since nobody could ever answer it. It returns the
// announcement: the name for providers, or the id for the requester.
func (q *RPCQueue) passOn(r *rpcReq, now time.Time) api.RPCWake {
	if q.registered(r.call.Name, r.tried, now) {
		q.requeue(r)
		return api.RPCWake{Name: r.call.Name}
	}
	q.finish(r, api.RPCResult{Code: api.CodeNoRPCProvider})
	return api.RPCWake{ID: r.call.ID}
}

// unqueue removes a pending request from its name's queue.
func (q *RPCQueue) unqueue(r *rpcReq) {
	list := q.pending[r.call.Name]
	if i := slices.Index(list, r); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(q.pending, r.call.Name)
	} else {
		q.pending[r.call.Name] = list
	}
}

// requeue puts a request back in its place (enqueue order) among the pending.
func (q *RPCQueue) requeue(r *rpcReq) {
	list := q.pending[r.call.Name]
	i, _ := slices.BinarySearchFunc(list, r.seq, func(x *rpcReq, seq uint64) int { return cmp.Compare(x.seq, seq) })
	q.pending[r.call.Name] = slices.Insert(list, i, r)
}

func (q *RPCQueue) hold(r *rpcReq) {
	m := q.held[r.provider]
	if m == nil {
		m = make(map[*rpcReq]struct{})
		q.held[r.provider] = m
	}
	m[r] = struct{}{}
}

// release ends the live claim of r.
func (q *RPCQueue) release(r *rpcReq) {
	if r.claim == "" {
		return
	}
	delete(q.claims, r.claim)
	if m := q.held[r.provider]; m != nil {
		delete(m, r)
		if len(m) == 0 {
			delete(q.held, r.provider)
		}
	}
	r.claim, r.provider = "", ""
}

func (q *RPCQueue) finish(r *rpcReq, res api.RPCResult) {
	r.done, r.result = true, res
}

// drop deletes a request in any state.
func (q *RPCQueue) drop(r *rpcReq) {
	if r.claim != "" {
		q.release(r)
	} else if !r.done {
		q.unqueue(r)
	}
	delete(q.reqs, r.call.ID)
}

// newClaimID returns 128 random bits in hex: unguessable, so only the
// provider that claimed a request can answer it.
func newClaimID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
