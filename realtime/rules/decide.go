package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/switchboard-dev/switchboard/api"
)

// Records gives record() its lookups. Record returns a record's data, or
// false when there is no such record. Implementations see the store as it
// is at the moment of the request and bypass read rules.
type Records interface {
	Record(ctx context.Context, name string) (json.RawMessage, bool, error)
}

// Query is one question to the rules: may User do Action (in Section) on
// Name? Data and OldData are what API.md's Permissions says for the action
// (nil or empty: null); Values, when set, stands for both, decoded once for
// many queries. Now is what expressions see as now (zero: the time of the
// evaluation).
type Query struct {
	Section string
	Action  string
	Name    string
	User    api.User
	Data    json.RawMessage
	OldData json.RawMessage
	Values  *Values
	Now     time.Time
}

// Decision is the rules' answer and what decided it.
type Decision struct {
	Allowed bool
	// Pattern, Rule and Line are the deciding rule: its pattern, its value
	// as written ("true", "false" or the expression) and the line of that
	// value. Empty when no rule applies.
	Pattern string
	Rule    string
	Line    int
	// Reason says why, in a few words, for logs and for rules test.
	Reason string
	// Err is set when the evaluation failed (an error, the cost limit, the
	// deadline, a failed or a fourth record() lookup): the action is denied
	// and the server logs the rule (once).
	Err error
}

// ErrTooManyLookups is a Decision's Err after a fourth record() lookup.
var ErrTooManyLookups = fmt.Errorf("more than %d record() lookups", MaxLookups)

// Decide answers q. A nil Rules (no rules file) allows everything. lookup
// serves record(); nil makes every record() call fail (and deny).
func (r *Rules) Decide(ctx context.Context, q Query, lookup Records) Decision {
	if r == nil {
		return Decision{Allowed: true, Reason: "no rules file"}
	}
	ru := r.find(q.Section, q.Action, q.Name)
	if ru == nil {
		return Decision{Reason: fmt.Sprintf("no %s rule matches %s %q", q.Action, q.Section, q.Name)}
	}
	d := Decision{Pattern: ru.pattern.src, Rule: ru.text, Line: ru.line}
	if ru.constant {
		d.Allowed = ru.value
		d.Reason = "the rule is false"
		if ru.value {
			d.Reason = "the rule is true"
		}
		return d
	}
	d.Allowed, d.Err = r.eval(ctx, ru, q, lookup)
	switch {
	case d.Err != nil:
		d.Reason = "evaluation failed: " + d.Err.Error()
	case d.Allowed:
		d.Reason = "the expression is true"
	default:
		d.Reason = "the expression is false"
	}
	return d
}

// DependsOnData reports whether the rule that decides action on name
// reads anything beyond who asks and the name: data, oldData, changed,
// now or record(). When it does not, one decision holds for every delivery
// to the same user (until the rules change).
func (r *Rules) DependsOnData(section, action, name string) bool {
	if r == nil {
		return false
	}
	ru := r.find(section, action, name)
	return ru != nil && !ru.constant && ru.expr.usesData
}

// find returns the most specific rule for the action whose pattern matches
// name.
func (r *Rules) find(section, action, name string) *rule {
	for _, ru := range r.rules[key{section, action}] {
		if ru.pattern.match(name, nil) {
			return ru
		}
	}
	return nil
}

// eval answers q with ru's expression: once for every query of q.Values
// when the answer does not depend on the user (see shared), else on its
// own.
func (r *Rules) eval(ctx context.Context, ru *rule, q Query, lookup Records) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if ru.expr.partial != nil && q.Values != nil {
		switch e := r.shared(ctx, ru, &q); e.state {
		case allowAll:
			return true, nil
		case denyAll:
			return false, nil
		case failAll:
			return false, e.err
		}
	}
	return r.evalOne(ctx, ru, &q, lookup)
}

// evalOne runs ru's expression on q under the cost limit (unless it
// cannot matter: see sizeBound) and, when it can loop or look records up,
// the deadline.
func (r *Rules) evalOne(ctx context.Context, ru *rule, q *Query, lookup Records) (bool, error) {
	a := newActivation(ctx, ru, q, lookup)
	defer a.release()
	out, err := r.run(ctx, ru, ru.expr.program(inputSize(q, a.values)), a, a)
	if a.failed != nil { // even when || or && absorbed the error
		return false, a.failed
	}
	if err != nil {
		return false, unwrapEval(err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("the expression returned %s, not a bool", out.Type().(*types.Type).TypeName())
	}
	return bool(b), nil
}

// run evaluates prg on vars (a, or what wraps it). A bounded expression
// runs each node at most once: the cost limit bounds it, and a context
// would cost more than the evaluation. Any other runs under the deadline.
func (r *Rules) run(ctx context.Context, ru *rule, prg cel.Program, a *activation, vars any) (ref.Val, error) {
	if ru.expr.bounded {
		out, _, err := prg.Eval(vars)
		return out, err
	}
	if r.timeout > 0 {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > r.timeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.timeout)
			defer cancel()
			a.ctx = ctx
		}
	}
	out, _, err := prg.ContextEval(ctx, vars)
	return out, err
}

func unwrapEval(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("deadline exceeded: %w", context.DeadlineExceeded)
	}
	return errors.New(unrewrite(err.Error()))
}
