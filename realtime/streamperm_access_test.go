package realtime

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// RulesAccess is a test-only Access over compiled rules, for the stream's
// permission tests until the server's own implementation is at hand. Its
// rules can be swapped, as a reload does. Allows counts the calls of Allow.
type RulesAccess struct {
	rules  atomic.Pointer[rules.Rules]
	Allows atomic.Int64
}

// NewRulesAccess compiles src (YAML) or fails the test.
func NewRulesAccess(t testing.TB, src string) *RulesAccess {
	a := &RulesAccess{}
	a.Swap(t, src)
	return a
}

// Swap replaces the rules with src compiled.
func (a *RulesAccess) Swap(t testing.TB, src string) {
	t.Helper()
	r, err := rules.Compile("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a.rules.Store(r)
}

// ruleAction maps a realtime action to its rules' name.
func ruleAction(act Action) string {
	if act == ActPresence {
		return "read"
	}
	return string(act)
}

// Allow decides r with the rules; record() sees nothing.
func (a *RulesAccess) Allow(ctx context.Context, r Request) error {
	a.Allows.Add(1)
	d := a.rules.Load().Decide(ctx, rules.Query{
		Section: string(r.Sec()), Action: ruleAction(r.Action), Name: r.Name, User: r.User,
		Data: r.Data, OldData: r.OldData, Values: r.Values,
	}, nil)
	if d.Allowed {
		return nil
	}
	return api.Errorf(api.CodePermissionDenied, "%s %s %q: %s", r.Sec(), r.Action, r.Name, d.Reason)
}

// DependsOnData asks the rules.
func (a *RulesAccess) DependsOnData(sec Section, act Action, name string) bool {
	return a.rules.Load().DependsOnData(string(sec), ruleAction(act), name)
}
