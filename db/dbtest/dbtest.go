// Package dbtest is the conformance suite of api.Store. Every backend runs
// Run from its own tests; a behaviour of the contract is specified here
// once, and a backend that does not pass the suite is not done.
//
// The suite is black-box: it uses only the api package and the standard
// library, and it judges a store by what the contract in api/store.go
// promises, never by how a backend is built.
package dbtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// test is one behaviour, run on a store of its own.
type test struct {
	name string
	run  func(t *testing.T, s api.Store)
}

// Run runs the conformance suite against the stores that open returns;
// each call to open returns a new, empty store (t.Cleanup closes it).
//
// Subtests run one after another, never in parallel, each on a store of
// its own, so open may reuse one database as long as every store it
// returns starts empty. Close must be idempotent: one subtest closes its
// store itself before the cleanup does.
func Run(t *testing.T, open func(t *testing.T) api.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Records", recordTests()},
		{"Conditions", conditionTests()},
		{"Tombstones", tombstoneTests()},
		{"Batch", batchTests()},
		{"Events", eventTests()},
		{"List", listTests()},
		{"ListData", listDataTests()},
		{"Snapshot", snapshotTests()},
		{"Changes", changesTests()},
		{"Concurrency", concurrencyTests()},
		{"Retention", retentionTests()},
		{"Streams", streamTests()},
		{"StreamSubs", streamSubTests()},
		{"Presence", presenceTests()},
		{"Listen", listenTests()},
		{"Misc", miscTests()},
		{"Revocations", revokeTests()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
			}
		})
	}
}

// Opened is what a backend's open function gives the suite (and its own
// tests): s, which t closes when it ends, failing if Close does. When err
// is set, it fails t at once.
func Opened[S interface{ Close() error }](t testing.TB, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// set returns a KindSet write whose Apply returns data, a fresh copy on
// every call.
func set(name, data string) api.Write {
	return api.Write{Kind: api.KindSet, Name: name, Apply: constant(data)}
}

// patch returns a KindPatch write whose Apply returns data.
func patch(name, data string) api.Write {
	return api.Write{Kind: api.KindPatch, Name: name, Apply: constant(data)}
}

// constant returns an Apply func that ignores the current value.
func constant(data string) func(json.RawMessage, bool) (json.RawMessage, error) {
	return func(json.RawMessage, bool) (json.RawMessage, error) {
		return json.RawMessage(data), nil
	}
}

// del returns a KindDelete write.
func del(name string) api.Write { return api.Write{Kind: api.KindDelete, Name: name} }

// event returns a KindEvent write.
func event(name, data, publisher string) api.Write {
	return api.Write{Kind: api.KindEvent, Name: name, Data: json.RawMessage(data), Publisher: publisher}
}

// failing returns a KindSet write whose Apply fails with err.
func failing(name string, err error) api.Write {
	return api.Write{Kind: api.KindSet, Name: name, Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		return nil, err
	}}
}

// ifMatch returns w made conditional on version.
func ifMatch(w api.Write, version int64) api.Write {
	w.IfMatch = version
	return w
}

// ifNoneMatch returns w made create-only.
func ifNoneMatch(w api.Write) api.Write {
	w.IfNoneMatch = true
	return w
}

// mustWrite writes one batch and stops the test if it fails or does not
// return one change per write.
func mustWrite(t *testing.T, s api.Store, writes ...api.Write) []api.Change {
	t.Helper()
	cs, err := s.Write(t.Context(), writes)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if len(cs) != len(writes) {
		t.Fatalf("Write returned %d changes for %d writes: %+v", len(cs), len(writes), cs)
	}
	return cs
}

// wantRecord checks that Get returns name at version with exactly data.
func wantRecord(t *testing.T, s api.Store, name string, version int64, data string) {
	t.Helper()
	r, err := s.Get(t.Context(), name)
	if err != nil {
		t.Errorf("Get(%q): %v, want version %d", name, err, version)
		return
	}
	if r.Name != name || r.Version != version || string(r.Data) != data {
		t.Errorf("Get(%q) = {%q v%d %s}, want {%q v%d %s}", name, r.Name, r.Version, r.Data, name, version, data)
	}
}

// wantMissing checks that Get says NOT_FOUND.
func wantMissing(t *testing.T, s api.Store, name string) {
	t.Helper()
	r, err := s.Get(t.Context(), name)
	if !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("Get(%q) = {v%d %s}, %v; want NOT_FOUND", name, r.Version, r.Data, err)
	}
}

// wantError checks that err is an *api.Error with code and returns it, or
// stops the test.
func wantError(t *testing.T, err error, code api.Code) *api.Error {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want an *api.Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("error code = %s (%v), want %s", e.Code, err, code)
	}
	return e
}

// wantField checks that the integer field key of e is want.
func wantField(t *testing.T, e *api.Error, key string, want int64) {
	t.Helper()
	got, ok := intField(e, key)
	if !ok {
		t.Errorf("error %v: Fields[%q] = %#v, want the integer %d", e, key, e.Fields[key], want)
	} else if got != want {
		t.Errorf("error %v: Fields[%q] = %d, want %d", e, key, got, want)
	}
}

// intField reads an integer problem field. Any integer type is accepted
// (the field ends up in JSON), and so is a float64 holding an integer.
func intField(e *api.Error, key string) (int64, bool) {
	switch v := e.Fields[key].(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case uint64:
		return int64(v), true
	case float64:
		return int64(v), v == math.Trunc(v)
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

// changesAfter reads the whole log after position after, page by page.
func changesAfter(t *testing.T, s api.Store, after int64) []api.Change {
	t.Helper()
	var all []api.Change
	for {
		cs, err := s.Changes(t.Context(), after, 100)
		if err != nil {
			t.Fatalf("Changes(%d, 100): %v", after, err)
		}
		if len(cs) > 100 {
			t.Fatalf("Changes(%d, 100) returned %d changes", after, len(cs))
		}
		if len(cs) == 0 {
			return all
		}
		all = append(all, cs...)
		after = cs[len(cs)-1].Seq
	}
}

// wantNoChanges checks that nothing was appended to the log after after.
func wantNoChanges(t *testing.T, s api.Store, after int64) {
	t.Helper()
	if cs := changesAfter(t, s, after); len(cs) > 0 {
		t.Errorf("the log grew after %d:%s", after, brief(cs))
	}
}

// wantIncreasing checks that Seq strictly increases along cs and is > 0.
func wantIncreasing(t *testing.T, cs []api.Change) {
	t.Helper()
	var last int64
	for i, c := range cs {
		if c.Seq <= last {
			t.Fatalf("change %d has Seq %d after Seq %d: the log must strictly increase", i, c.Seq, last)
		}
		last = c.Seq
	}
}

// wantSameChanges checks that got and want are the same changes: same
// Seq, Kind, Name, Version, Data and Publisher, and times within a
// millisecond (a backend may store times more coarsely than Go keeps them).
func wantSameChanges(t *testing.T, got, want []api.Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d:\n got  %s\n want %s", len(got), len(want), brief(got), brief(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Kind != w.Kind || g.Name != w.Name || g.Version != w.Version ||
			!bytes.Equal(g.Data, w.Data) || g.Publisher != w.Publisher || g.Time.Sub(w.Time).Abs() > time.Millisecond {
			t.Errorf("change %d = %+v, want %+v", i, g, w)
		}
	}
}

// wantChange checks the fields of one record change.
func wantChange(t *testing.T, c api.Change, kind api.Kind, name string, version int64, data string) {
	t.Helper()
	if c.Seq <= 0 || c.Kind != kind || c.Name != name || c.Version != version || string(c.Data) != data || c.Time.IsZero() {
		t.Errorf("change = {Seq %d %s %q v%d %s time %v}, want {Seq > 0 %s %q v%d %s, a time}",
			c.Seq, c.Kind, c.Name, c.Version, c.Data, c.Time, kind, name, version, data)
	}
}

// brief formats changes one a line, for failure messages.
func brief(cs []api.Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "\n  seq %d %s %q v%d %s", c.Seq, c.Kind, c.Name, c.Version, c.Data)
	}
	return b.String()
}
