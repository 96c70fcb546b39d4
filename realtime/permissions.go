package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// Permissions is the Access of a server with a rules file: every request
// is decided by the compiled rules, which Load swaps at once (SIGHUP).
// record() lookups read the Store as it is at the moment of the request,
// bypassing read rules. An evaluation that fails denies, and the rule is
// logged once (per set of rules loaded), not once per request. It is safe
// for concurrent use.
type Permissions struct {
	file    string
	records rules.Records
	log     *slog.Logger
	current atomic.Pointer[loaded]
	// Stats counts the evaluations, for the metrics.
	Stats RuleStats
}

var _ Access = (*Permissions)(nil)

// loaded is one set of rules and the rules of it already logged as failing.
type loaded struct {
	rules  *rules.Rules
	logged sync.Map // ruleID -> struct{}
}

type ruleID struct {
	section, action, pattern string
	line                     int
}

// NewPermissions returns the Access over r, compiled from file (which log
// lines name), whose record() lookups read store.
func NewPermissions(file string, r *rules.Rules, store api.Store, log *slog.Logger) *Permissions {
	p := &Permissions{file: file, records: storeRecords{store}, log: log}
	p.Load(r)
	return p
}

// Load replaces the rules at once: every decision that starts after it
// returns uses r.
func (p *Permissions) Load(r *rules.Rules) { p.current.Store(&loaded{rules: r}) }

// Rules returns the rules in force.
func (p *Permissions) Rules() *rules.Rules { return p.current.Load().rules }

// Allow decides r by the rules in force: nil, or PERMISSION_DENIED naming
// the action and the name (never the data).
func (p *Permissions) Allow(ctx context.Context, r Request) error {
	cur := p.current.Load()
	sec, act := rulesAction(r)
	start := time.Now()
	d := cur.rules.Decide(ctx, rules.Query{
		Section: sec, Action: act, Name: r.Name, User: r.User,
		Data: r.Data, OldData: r.OldData, Values: r.Values,
	}, p.records)
	p.Stats.add(sec, act, d.Allowed, time.Since(start))
	if d.Err != nil {
		p.failed(ctx, cur, sec, act, r.Name, d)
	}
	if d.Allowed {
		return nil
	}
	return refusal(r, sec, act)
}

// DependsOnData reports whether the rule in force for act on name reads
// the data, the time or other records.
func (p *Permissions) DependsOnData(sec Section, act Action, name string) bool {
	s, a := rulesAction(Request{Section: sec, Action: act})
	return p.current.Load().rules.DependsOnData(s, a, name)
}

// failed counts a failed evaluation and logs its rule, the first time
// only. An evaluation cut short because the caller went away is not the
// rule's fault and is not logged.
func (p *Permissions) failed(ctx context.Context, cur *loaded, sec, act, name string, d rules.Decision) {
	if ctx.Err() != nil {
		return
	}
	p.Stats.Errors.Add(1)
	id := ruleID{sec, act, d.Pattern, d.Line}
	if _, seen := cur.logged.LoadOrStore(id, struct{}{}); seen {
		return
	}
	p.log.Error("permission rule failed: it denies until it is fixed (logged once per rule)",
		"rule", fmt.Sprintf("%s:%d", p.file, d.Line), "section", sec, "pattern", d.Pattern, "action", act,
		"expression", d.Rule, "name", name, "error", d.Err.Error())
}

// rulesAction maps a request to the section and action of the rules.
func rulesAction(r Request) (string, string) {
	sec := r.Sec()
	switch r.Action {
	case ActPresence:
		return string(SecPresence), "read"
	case ActListen:
		if sec != SecEvent {
			sec = SecRecord
		}
	}
	return string(sec), string(r.Action)
}

// refusal is the PERMISSION_DENIED of a request: it names the user, the
// action and the name, never the data.
func refusal(r Request, sec, act string) error {
	who := "an anonymous user"
	if r.User.ID != "" {
		who = fmt.Sprintf("user %q", r.User.ID)
	}
	what := act + " " + sec
	switch {
	case sec == string(SecPresence):
		what = "read the presence of user"
	case act == "listen":
		what = "listen to " + sec
	case act == "subscribe":
		what = "subscribe to event"
	case act == "provide":
		what = "provide rpc"
	case act == "request":
		what = "call rpc"
	}
	return api.Errorf(api.CodePermissionDenied, "the permission rules do not allow %s to %s %q", who, what, r.Name)
}

// storeRecords serves record() lookups from the Store.
type storeRecords struct{ store api.Store }

func (s storeRecords) Record(ctx context.Context, name string) (json.RawMessage, bool, error) {
	rec, err := s.store.Get(ctx, name)
	switch {
	case api.IsCode(err, api.CodeNotFound), api.IsCode(err, api.CodeInvalidName):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return rec.Data, true, nil
}

// RuleStats counts the evaluations of permission rules. Its methods are
// safe for concurrent use.
type RuleStats struct {
	counts [len(ruleKinds)][2]atomic.Int64
	// Errors counts the evaluations that failed (and denied).
	Errors atomic.Int64
	// Nanos is the time spent deciding, in nanoseconds.
	Nanos atomic.Int64
}

// RuleKind is a section and an action that rules decide.
type RuleKind struct{ Section, Action string }

// ruleKinds are every section's actions, in the rules' order.
var ruleKinds = [...]RuleKind{
	{"record", "read"}, {"record", "create"}, {"record", "write"}, {"record", "delete"}, {"record", "listen"},
	{"event", "publish"}, {"event", "subscribe"}, {"event", "listen"},
	{"rpc", "provide"}, {"rpc", "request"},
	{"presence", "read"},
}

// RuleKinds returns every section and action that rules decide.
func RuleKinds() []RuleKind { return ruleKinds[:] }

func kindIndex(sec, act string) int {
	for i, k := range ruleKinds {
		if k.Section == sec && k.Action == act {
			return i
		}
	}
	return -1
}

func (s *RuleStats) add(sec, act string, allowed bool, d time.Duration) {
	if i := kindIndex(sec, act); i >= 0 {
		s.counts[i][b2i(allowed)].Add(1)
	}
	s.Nanos.Add(int64(d))
}

// Count returns how many evaluations of k were allowed (or denied).
func (s *RuleStats) Count(k RuleKind, allowed bool) int64 {
	if i := kindIndex(k.Section, k.Action); i >= 0 {
		return s.counts[i][b2i(allowed)].Load()
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
