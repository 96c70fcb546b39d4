package realtime

import (
	"context"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The providers' side of RPC: long-polls for requests, and answers.

// Poll is a provider's long-poll.
type Poll struct {
	Names []string
	// Provider is a stable id of the provider process: a request it
	// rejected or let time out never comes back to it. Empty: this poll is
	// a provider of its own.
	Provider string
	Wait     time.Duration // how long to wait for work, from 0 to MaxPollWait
	Max      int           // at most this many requests, from 1 to MaxPollRequests
}

// Poll registers the caller as a provider of p.Names while it waits (and
// for RPCConfig.AckTimeout after), and returns requests as soon as there
// are any, or none after p.Wait. Each request must be answered with
// Answer within AckTimeout.
func (s *RPC) Poll(ctx context.Context, user api.User, p Poll) ([]api.RPCRequest, error) {
	names, err := s.checkPoll(ctx, user, p)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	provider := "#" + randomID() // '#' is no byte of a provider id: never one of theirs
	if p.Provider != "" {
		provider = user.ID + "|" + p.Provider // split at the last '|': ids have none
	}
	wake := make(chan struct{}, 1)
	s.addPoll(wake, names, 1)
	defer s.addPoll(wake, names, -1)
	grace := s.cfg.AckTimeout
	end := time.NewTimer(p.Wait)
	defer end.Stop()
	refresh := time.NewTicker(grace / 2) // renews the registration while the poll waits
	defer refresh.Stop()
	for {
		now := time.Now()
		reqs, err := s.queue.Claim(ctx, api.RPCClaim{Provider: provider, Names: names, Max: p.Max,
			Lease: s.cfg.AckTimeout, Until: now.Add(grace)}, now)
		if err != nil {
			return nil, err
		}
		if len(reqs) > 0 {
			s.reapBy(now.Add(s.cfg.AckTimeout))
			return reqs, nil
		}
		select {
		case <-wake:
			continue
		case <-refresh.C:
			continue
		case <-end.C:
		case <-s.draining:
		case <-ctx.Done():
		}
		// Registered for a grace after the poll, even if the provider left.
		if err := s.register(ctx, provider, names, time.Now().Add(grace)); err != nil {
			return nil, err
		}
		return nil, ctx.Err()
	}
}

// register registers a provider even when ctx has ended.
func (s *RPC) register(ctx context.Context, provider string, names []string, until time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return s.queue.Register(ctx, provider, names, until)
}

// checkPoll validates a poll and returns its names, each once.
func (s *RPC) checkPoll(ctx context.Context, user api.User, p Poll) ([]string, error) {
	if len(p.Names) == 0 {
		return nil, api.Errorf(api.CodeInvalidName, "name the RPCs this provider serves, one ?name= each")
	}
	var names []string
	for _, n := range p.Names {
		if err := api.ValidateName(n); err != nil {
			return nil, err
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	switch {
	case len(names) > MaxPollNames:
		return nil, api.Errorf(api.CodeInvalidName, "a poll serves at most %d names, not %d", MaxPollNames, len(names))
	case p.Wait < 0 || p.Wait > MaxPollWait:
		return nil, api.InvalidParameter("wait", "wait must be from 0s to %s, not %s", MaxPollWait, p.Wait)
	case p.Max < 1 || p.Max > MaxPollRequests:
		return nil, api.InvalidParameter("max", "max must be a whole number from 1 to %d, not %d", MaxPollRequests, p.Max)
	case p.Provider != "" && (len(p.Provider) > MaxProviderLen || api.ValidateName(p.Provider) != nil):
		return nil, api.InvalidParameter("provider",
			"provider must be 1-%d bytes of A-Z a-z 0-9 - _ . ~ / : @ ! (no leading or trailing '/'), not %q", MaxProviderLen, p.Provider)
	}
	for _, n := range names {
		if err := s.access.Allow(ctx, Request{User: user, Action: ActProvide, Name: n}); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Answer takes a provider's answer to the request it claimed as id:
// exactly one of a.Data (valid JSON), a.Error (a message) and a.Reject.
// The claim id is the provider's proof: an unknown, expired, foreign or
// answered id is NOT_FOUND.
func (s *RPC) Answer(ctx context.Context, id string, a api.RPCAnswer) error {
	n := 0
	for _, set := range []bool{a.Data != nil, a.Error != "", a.Reject} {
		if set {
			n++
		}
	}
	if n != 1 {
		return api.Errorf(api.CodeInvalidJSON, `an answer is {"data": <result>}, {"error": "message"} or {"reject": true}: exactly one of them`)
	}
	if a.Data != nil {
		data, err := api.Compact(a.Data)
		if err != nil {
			return err
		}
		a.Data = data
	}
	return s.queue.Answer(ctx, id, a, time.Now())
}

// addPoll adds (n=1) or removes (n=-1) a waiting poll.
func (s *RPC) addPoll(wake chan struct{}, names []string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		set := s.polls[name]
		if set == nil {
			set = make(map[chan struct{}]int)
			s.polls[name] = set
		}
		if set[wake] += n; set[wake] <= 0 {
			delete(set, wake)
			if len(set) == 0 {
				delete(s.polls, name)
			}
		}
	}
}
