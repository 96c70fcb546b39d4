package rules

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/switchboard-dev/switchboard/api"
)

// One delivery asks the same rule about the same change for every
// subscriber, and most of a rule on the data does not depend on who asks:
// data.public == true && user.id != '' is false for everyone when public is
// false. The first query of a Values evaluates the rule with user.id,
// user.data and user.claims unknown (CEL's partial evaluation); when that
// gives a bool, it is every subscriber's answer, with no further
// evaluation. When the answer depends on the user, each query evaluates as
// it would alone. CEL's unknowns are sound: a bool despite them is the bool
// any value of them gives (false && x is false even when x fails).

// unknownUser is what partial evaluations do not know.
var unknownUser = []*interpreter.AttributePattern{
	cel.AttributePattern(varUserID),
	cel.AttributePattern(varUserData),
	cel.AttributePattern(varUserClaims),
}

// sharedState is what a partial evaluation decided.
type sharedState uint8

const (
	perUser sharedState = iota // it depends on the user: evaluate each query
	allowAll
	denyAll
	failAll // an expression that reads nothing of the user failed
)

// sharedEntry is one rule's shared decision on one name.
type sharedEntry struct {
	ru    *rule
	name  string
	state sharedState
	err   error // failAll's
}

// sharedDecisions is a Values' cache of shared decisions: read without a
// lock (one delivery has one or two), added to under mu.
type sharedDecisions struct {
	mu      sync.Mutex
	entries atomic.Pointer[[]sharedEntry]
}

func (s *sharedDecisions) find(ru *rule, name string) (sharedEntry, bool) {
	if p := s.entries.Load(); p != nil {
		for _, e := range *p {
			if e.ru == ru && e.name == name {
				return e, true
			}
		}
	}
	return sharedEntry{}, false
}

// shared returns ru's decision on q that holds for every user, made once
// per Values and name (the name gives the pattern's variables).
func (r *Rules) shared(ctx context.Context, ru *rule, q *Query) sharedEntry {
	s := &q.Values.shared
	if e, ok := s.find(ru, q.Name); ok {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.find(ru, q.Name); ok {
		return e
	}
	e := sharedEntry{ru: ru, name: q.Name, state: r.partialEval(ctx, ru, q)}
	if e.state == failAll {
		_, e.err = r.evalOne(ctx, ru, q, nil)
		if e.err == nil || errors.Is(e.err, context.DeadlineExceeded) || errors.Is(e.err, context.Canceled) {
			return sharedEntry{state: perUser} // the caller's context: not kept
		}
	}
	var next []sharedEntry
	if p := s.entries.Load(); p != nil {
		next = append(next, *p...)
	}
	next = append(next, e)
	s.entries.Store(&next)
	return e
}

// partialEval evaluates ru on q's data with the user unknown.
func (r *Rules) partialEval(ctx context.Context, ru *rule, q *Query) sharedState {
	pq := *q
	pq.User = api.User{}
	a := newActivation(ctx, ru, &pq, nil)
	defer a.release()
	vars, err := cel.PartialVars(a, unknownUser...)
	if err != nil {
		return perUser
	}
	out, err := r.run(ctx, ru, ru.expr.partial, a, vars)
	switch {
	case err == nil && out == types.True:
		return allowAll
	case err == nil && out == types.False:
		return denyAll
	case !ru.expr.usesUser && !types.IsUnknown(out):
		return failAll // an error or not a bool: the same for everyone
	}
	return perUser
}
