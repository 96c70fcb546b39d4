package dbtest

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

func batchTests() []test {
	return []test{
		{"AllOrNothing", testBatchAllOrNothing},
		{"SameRecord", testBatchSameRecord},
		{"Order", testBatchOrder},
		{"DeleteCheck", testBatchDeleteCheck},
	}
}

func eventTests() []test {
	return []test{
		{"Publish", testEventPublish},
		{"NoRecord", testEventNoRecord},
	}
}

// A batch with a failing write fails as a whole: the error carries the
// failing write's code and its index, and nothing of the batch is applied,
// neither to the records nor to the log.
func testBatchAllOrNothing(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1))
	head := mustWrite(t, s, set("b", docV1))[0].Seq
	boom := errors.New("boom")
	testFailed := api.Errorf(api.CodePatchFailed, "test failed")

	cases := []struct {
		name   string
		writes []api.Write
		code   api.Code // "" accepts any code (Apply failed with a plain error)
		index  int64
		// current is the currentVersion of an IfMatch conflict; -1: unchecked.
		current int64
	}{
		{"ApplyError", []api.Write{set("x", `1`), set("a", docV2), failing("b", testFailed), set("c", `1`)},
			api.CodePatchFailed, 2, -1},
		{"ApplyPlainError", []api.Write{set("x", `1`), failing("a", boom)},
			"", 1, -1},
		{"FirstWrite", []api.Write{failing("a", testFailed), set("x", `1`)},
			api.CodePatchFailed, 0, -1},
		{"IfMatch", []api.Write{set("x", `1`), del("b"), ifMatch(set("a", docV2), 7)},
			api.CodeVersionConflict, 2, 1},
		{"IfMatchAfterEarlierWrite", []api.Write{set("a", docV2), ifMatch(set("a", docV3), 1)},
			api.CodeVersionConflict, 1, 2}, // a condition sees the batch's earlier writes
		{"IfNoneMatch", []api.Write{set("x", `1`), event("e", `1`, "u"), ifNoneMatch(set("a", docV2))},
			api.CodeVersionConflict, 2, -1},
		{"DeleteMissing", []api.Write{set("x", `1`), del("missing")},
			api.CodeNotFound, 1, -1},
		{"DeleteTwice", []api.Write{del("a"), del("a")},
			api.CodeNotFound, 1, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := s.Write(t.Context(), tc.writes)
			var e *api.Error
			switch {
			case err == nil:
				t.Errorf("Write succeeded with %s, want an error at index %d", brief(cs), tc.index)
			case !errors.As(err, &e):
				t.Errorf("error = %v (%T), want an *api.Error with the field \"index\" %d", err, err, tc.index)
			default:
				if tc.code != "" && e.Code != tc.code {
					t.Errorf("error code = %s (%v), want %s", e.Code, err, tc.code)
				}
				wantField(t, e, "index", tc.index)
				if tc.current >= 0 {
					wantField(t, e, "currentVersion", tc.current)
				}
			}
			wantRecord(t, s, "a", 1, docV1)
			wantRecord(t, s, "b", 1, docV1)
			wantMissing(t, s, "x")
			wantMissing(t, s, "c")
			wantNoChanges(t, s, head)
		})
	}
}

// Two writes to one record in one batch are two versions, and the second
// Apply sees the first one's value.
func testBatchSameRecord(t *testing.T, s api.Store) {
	var p probe
	cs := mustWrite(t, s,
		set("doc", docV1),
		p.write(api.KindSet, "doc", docV2),
		ifMatch(set("doc", docV3), 2),
	)
	p.want(t, docV1, true)
	wantChange(t, cs[0], api.KindSet, "doc", 1, docV1)
	wantChange(t, cs[1], api.KindSet, "doc", 2, docV2)
	wantChange(t, cs[2], api.KindSet, "doc", 3, docV3)
	wantIncreasing(t, cs)
	wantRecord(t, s, "doc", 3, docV3)
	wantSameChanges(t, changesAfter(t, s, 0), cs)
}

// A batch's changes are in batch order, in what Write returns and in the
// log, whatever the kinds.
func testBatchOrder(t *testing.T, s api.Store) {
	first := mustWrite(t, s, set("a", docV1))
	cs := mustWrite(t, s,
		set("b", docV1),
		event("news", `{"n":1}`, "alice"),
		del("a"),
		patch("b", docV2),
		set("a", docV3),
	)
	wantIncreasing(t, append(first, cs...))
	want := []struct {
		kind    api.Kind
		name    string
		version int64
	}{
		{api.KindSet, "b", 1}, {api.KindEvent, "news", 0}, {api.KindDelete, "a", 2},
		{api.KindPatch, "b", 2}, {api.KindSet, "a", 3},
	}
	for i, w := range want {
		c := cs[i]
		if c.Kind != w.kind || c.Name != w.name || (w.kind != api.KindEvent && c.Version != w.version) {
			t.Errorf("change %d = {%s %q v%d}, want {%s %q v%d}", i, c.Kind, c.Name, c.Version, w.kind, w.name, w.version)
		}
	}
	wantSameChanges(t, changesAfter(t, s, first[0].Seq), cs)
	wantRecord(t, s, "a", 3, docV3)
	wantRecord(t, s, "b", 2, docV2)
}

// An event is a change of the log with its name, payload and publisher.
func testEventPublish(t *testing.T, s api.Store) {
	cs := mustWrite(t, s,
		event("chat/lobby", `{"text":"hi","at":[1,2]}`, "alice"),
		event("chat/lobby", `"anonymous"`, ""),
	)
	for i, want := range []struct{ data, publisher string }{
		{`{"text":"hi","at":[1,2]}`, "alice"},
		{`"anonymous"`, ""},
	} {
		c := cs[i]
		if c.Seq <= 0 || c.Kind != api.KindEvent || c.Name != "chat/lobby" || string(c.Data) != want.data ||
			c.Publisher != want.publisher || c.Time.IsZero() {
			t.Errorf("event change %d = %+v, want {event \"chat/lobby\" %s publisher %q}", i, c, want.data, want.publisher)
		}
	}
	wantIncreasing(t, cs)
	wantSameChanges(t, changesAfter(t, s, 0), cs)
}

// An event creates no record and leaves a record of the same name alone.
func testEventNoRecord(t *testing.T, s api.Store) {
	mustWrite(t, s, set("room", docV1))
	mustWrite(t, s, event("room", `1`, "bob"), event("chat/lobby", `2`, "bob"))
	wantMissing(t, s, "chat/lobby")
	wantRecord(t, s, "room", 1, docV1)
	recs, err := s.List(t.Context(), "", "", 10)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(recs) != 1 || recs[0].Name != "room" {
		t.Errorf("List = %+v, want only the record \"room\"", recs)
	}
	c := mustWrite(t, s, set("room", docV2))[0]
	wantChange(t, c, api.KindSet, "room", 2, docV2)

	// An event before a record write in a batch leaves the record's Apply
	// to see the record itself.
	var p probe
	mustWrite(t, s, event("room", `3`, ""), p.write(api.KindSet, "room", docV3))
	p.want(t, docV2, true)
}

// checkedDelete returns a KindDelete write whose Check records what it
// saw in p and fails with err (nil: allows).
func (p *probe) checkedDelete(name string, err error) api.Write {
	return api.Write{Kind: api.KindDelete, Name: name, Check: func(cur json.RawMessage, exists bool) error {
		p.calls++
		p.current = append(json.RawMessage(nil), cur...)
		p.isNil = cur == nil
		p.exists = exists
		return err
	}}
}

// A delete's Check sees the record as the batch's earlier writes left it;
// its error fails the batch at its index, before NOT_FOUND (so that a
// refusal does not tell whether the record exists), and nothing is
// applied; a nil Check error deletes.
func testBatchDeleteCheck(t *testing.T, s api.Store) {
	head := mustWrite(t, s, set("a", docV1))[0].Seq
	refused := api.Errorf(api.CodePermissionDenied, "no")
	for _, tc := range []struct {
		name    string
		writes  func(p *probe) []api.Write
		current string
		exists  bool
	}{
		{"Stored", func(p *probe) []api.Write { return []api.Write{set("x", `1`), p.checkedDelete("a", refused)} }, docV1, true},
		{"AfterEarlierWrite", func(p *probe) []api.Write { return []api.Write{set("a", docV2), p.checkedDelete("a", refused)} }, docV2, true},
		{"Missing", func(p *probe) []api.Write { return []api.Write{set("x", `1`), p.checkedDelete("missing", refused)} }, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p probe
			_, err := s.Write(t.Context(), tc.writes(&p))
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodePermissionDenied {
				t.Fatalf("error = %v, want the Check's PERMISSION_DENIED", err)
			}
			wantField(t, e, "index", int64(1))
			p.want(t, tc.current, tc.exists)
			wantRecord(t, s, "a", 1, docV1)
			wantMissing(t, s, "x")
			wantNoChanges(t, s, head)
		})
	}
	var p probe
	cs := mustWrite(t, s, p.checkedDelete("a", nil))
	p.want(t, docV1, true)
	wantChange(t, cs[0], api.KindDelete, "a", 2, "")
	wantMissing(t, s, "a")
}
