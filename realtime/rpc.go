package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The limits of RPC calls and polls.
const (
	DefaultCallTimeout = 10 * time.Second // POST /rpc/{name}?timeout=
	MaxCallTimeout     = 60 * time.Second
	DefaultPollWait    = 30 * time.Second // GET /rpc-requests?wait=
	MaxPollWait        = 60 * time.Second
	MaxPollRequests    = 100 // ?max=
	MaxPollNames       = 100 // ?name= repeated
	MaxProviderLen     = 128 // ?provider=
)

// RPCConfig holds the settings of the RPC service.
type RPCConfig struct {
	// AckTimeout is how long a provider has to answer a request it took
	// before it is presumed dead (renewed by each answer). It is also the
	// grace for which a provider stays registered after its poll ends: a
	// live provider polls again within it.
	AckTimeout time.Duration
	// MaxAttempts is how many providers may be presumed dead on one request
	// before its requester gets RPC_TIMEOUT. Before that, a request that no
	// provider who has not had it is left to take ends at once with
	// NO_RPC_PROVIDER, as after a reject.
	MaxAttempts int
	// MaxInFlightPerUser bounds the calls of one signed-in user waiting
	// for their answers on this instance (0: no bound).
	MaxInFlightPerUser int
}

// RPC is the RPC service: requesters wait for answers, providers long-poll
// for requests, both through the RPCQueue, so that requester and provider
// may sit on different instances. Nobody polls the queue: the queue
// announces on the Bus, and Run hands each announcement to the requester
// or the polls of this instance that wait for it. Run also ends the leases
// that run out, at the time they end. RPC is safe for concurrent use.
type RPC struct {
	queue  api.RPCQueue
	bus    api.Bus
	access Access
	cfg    RPCConfig
	log    *slog.Logger

	ready    chan struct{} // closed once Run listens on TopicRPC
	draining chan struct{}
	drain    sync.Once

	mu     sync.Mutex
	calls  map[string]chan struct{}         // requesters waiting, by request id
	polls  map[string]map[chan struct{}]int // polls waiting, by name
	reapAt time.Time                        // the earliest lease end handed out since the reaper last looked
	reap   chan struct{}

	inFlight slots    // calls waiting, by user (slots.go)
	measures Measures // set by Measure before Run, then read-only
}

// NewRPC returns the RPC service over queue, which announces on bus.
func NewRPC(queue api.RPCQueue, bus api.Bus, access Access, cfg RPCConfig, log *slog.Logger) *RPC {
	return &RPC{
		queue: queue, bus: bus, access: access, cfg: cfg, log: log,
		ready:    make(chan struct{}),
		draining: make(chan struct{}),
		calls:    make(map[string]chan struct{}),
		polls:    make(map[string]map[chan struct{}]int),
		reap:     make(chan struct{}, 1),
		inFlight: slots{perUser: cfg.MaxInFlightPerUser},
	}
}

// Run listens for the queue's announcements and ends leases that run out,
// until ctx ends. Calls and polls wait until it listens.
func (s *RPC) Run(ctx context.Context) {
	stop := s.bus.Subscribe(api.TopicRPC, s.onWake)
	defer stop()
	close(s.ready)
	s.reaper(ctx)
}

// Drain ends the polls under way and refuses new polls and calls, so that
// providers and requesters go to another instance. A call under way waits
// at most AckTimeout more (an answer under way has that long to come),
// then gets UNAVAILABLE.
func (s *RPC) Drain() { s.drain.Do(func() { close(s.draining) }) }

// Call sends input to a provider of the RPC name and waits up to timeout
// for its answer. When ctx ends first (the requester went away), the
// request is freed and ctx's error returned.
func (s *RPC) Call(ctx context.Context, user api.User, name string, input []byte, timeout time.Duration) (json.RawMessage, error) {
	data, err := s.checkCall(ctx, user, name, input, timeout)
	if err != nil {
		return nil, err
	}
	release, err := s.rpcSlot(user.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	id := randomID()
	wake := make(chan struct{}, 1)
	s.mu.Lock()
	s.calls[id] = wake
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.calls, id)
		s.mu.Unlock()
	}()
	now := time.Now()
	call := api.RPCCall{ID: id, Name: name, Data: data, Requester: user.ID,
		Deadline: now.Add(timeout), MaxAttempts: s.cfg.MaxAttempts}
	if err := s.queue.Enqueue(ctx, call, now); err != nil {
		return nil, err
	}
	out, err := s.await(ctx, call, timeout, wake)
	s.measureCall(now, err)
	return out, err
}

// checkCall validates a call and returns its input, compacted.
func (s *RPC) checkCall(ctx context.Context, user api.User, name string, input []byte, timeout time.Duration) (json.RawMessage, error) {
	if err := api.ValidateName(name); err != nil {
		return nil, err
	}
	if timeout <= 0 || timeout > MaxCallTimeout {
		return nil, api.InvalidParameter("timeout", "timeout must be more than 0s and at most %s, not %s", MaxCallTimeout, timeout)
	}
	data, err := api.Compact(input)
	if err != nil {
		return nil, err
	}
	if err := s.access.Allow(ctx, Request{User: user, Action: ActRequest, Name: name, Data: data}); err != nil {
		return nil, err
	}
	return data, nil
}

// await waits for the answer to call, woken through wake, for up to
// timeout; then it frees the request (giveUp). It ends with RPC_TIMEOUT,
// or, when the server shuts down, after an answer under way had
// AckTimeout to come, with UNAVAILABLE.
func (s *RPC) await(ctx context.Context, call api.RPCCall, timeout time.Duration, wake <-chan struct{}) (json.RawMessage, error) {
	name, id := call.Name, call.ID
	timedOut := api.Errorf(api.CodeRPCTimeout, "no answer from rpc %q within %s", name, timeout)
	end, draining := timedOut, s.draining
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-wake:
			res, ok, err := s.queue.Take(ctx, id)
			switch {
			case ok:
				return s.result(name, res)
			case api.IsCode(err, api.CodeNotFound): // cleaned up: past its deadline
				return nil, timedOut
			case err != nil && ctx.Err() == nil:
				return nil, err
			}
		case <-draining:
			draining = nil
			if left := time.Until(call.Deadline); left > s.cfg.AckTimeout {
				end = api.Errorf(api.CodeUnavailable, "the server is shutting down before rpc %q was answered; call again", name)
				timer.Reset(s.cfg.AckTimeout)
			}
		case <-timer.C:
			return s.giveUp(ctx, name, id, end)
		case <-ctx.Done():
			return s.giveUp(ctx, name, id, ctx.Err())
		}
	}
}

// giveUp frees a request whose requester stops waiting and returns err;
// an answer that came in meanwhile still wins.
func (s *RPC) giveUp(ctx context.Context, name, id string, err error) (json.RawMessage, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res, ok, cerr := s.queue.Cancel(cctx, id)
	switch {
	case cerr != nil:
		return nil, cerr
	case ok:
		return s.result(name, res)
	}
	return nil, err
}

// result turns how a request ended into the requester's answer.
func (s *RPC) result(name string, r api.RPCResult) (json.RawMessage, error) {
	switch r.Code {
	case "":
		return r.Data, nil
	case api.CodeRPCError:
		return nil, api.Errorf(api.CodeRPCError, "%s", r.Message)
	case api.CodeNoRPCProvider:
		return nil, api.Errorf(api.CodeNoRPCProvider,
			"no provider of rpc %q is left that has not had the request: each one rejected it or did not answer within %s",
			name, s.cfg.AckTimeout)
	case api.CodeRPCTimeout:
		return nil, api.Errorf(api.CodeRPCTimeout, "no answer from rpc %q: %d providers took the request and did not answer within %s",
			name, s.cfg.MaxAttempts, s.cfg.AckTimeout)
	}
	return nil, api.Internal(nil, "rpc %q ended with the unknown code %q", name, r.Code)
}

func (s *RPC) waitReady(ctx context.Context) error {
	return waitUntil(ctx, s.ready, s.draining, api.Errorf(api.CodeUnavailable, "the server is shutting down; try again"))
}

// onWake hands an announcement to those of this instance who wait for it;
// nil (announcements may have been lost) wakes everyone.
func (s *RPC) onWake(payload []byte) {
	w, ok := api.ParseRPCWake(payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case payload == nil:
		for _, c := range s.calls {
			signal(c)
		}
		for _, set := range s.polls {
			for c := range set {
				signal(c)
			}
		}
	case ok && w.ID != "":
		if c := s.calls[w.ID]; c != nil {
			signal(c)
		}
	case ok:
		for c := range s.polls[w.Name] {
			signal(c)
		}
	}
}

// reapBy tells the reaper that a lease ends at t.
func (s *RPC) reapBy(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reapAt.IsZero() || t.Before(s.reapAt) {
		s.reapAt = t
		signal(s.reap)
	}
}

// reaper runs the queue's Expire when the earliest lease ends, and at
// least every AckTimeout, for leases that other instances handed out and
// for cleanup.
func (s *RPC) reaper(ctx context.Context) {
	backstop := s.cfg.AckTimeout
	next := time.Now().Add(backstop)
	timer := time.NewTimer(backstop)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reap:
			s.mu.Lock()
			at := s.reapAt
			s.reapAt = time.Time{}
			s.mu.Unlock()
			if !at.IsZero() && at.Before(next) {
				next = at
				timer.Reset(time.Until(next))
			}
			continue
		case <-timer.C:
		}
		now := time.Now()
		due, err := s.queue.Expire(ctx, now)
		next = now.Add(backstop)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("expire rpc requests", "err", err)
			next = now.Add(min(backstop, 250*time.Millisecond))
		case !due.IsZero() && due.Before(next):
			next = due
		}
		timer.Reset(time.Until(next))
	}
}

// randomID returns 128 random bits in hex.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
