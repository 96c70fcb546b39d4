package api_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// TestNextRecovers checks that a write whose Apply panics (a library bug)
// fails alone with INTERNAL: Next runs inside a backend's commit, where a
// panic would end the server.
func TestNextRecovers(t *testing.T) {
	w := api.Write{Kind: api.KindPatch, Name: "r", Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		var m map[string]int
		m["x"]++ // a nil map: panics
		return nil, nil
	}}
	cur := api.RecordState{Version: 3, Data: json.RawMessage(`{}`), Exists: true}
	_, next, err := w.Next(cur)
	if code := api.ErrorCode(err); code != api.CodeInternal || err == nil {
		t.Fatalf("Next = %v (code %s), want INTERNAL", err, code)
	}
	if next.Version != cur.Version || string(next.Data) != string(cur.Data) {
		t.Errorf("Next moved the record to %+v", next)
	}
}

// TestNextCreates: a write that creates its record (again, after a
// delete) is a set, whatever its kind; one that changes it keeps its kind.
func TestNextCreates(t *testing.T) {
	value := func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(`{"x":1}`), nil }
	for _, c := range []struct {
		cur  api.RecordState
		kind api.Kind
		want api.Kind
	}{
		{api.RecordState{}, api.KindPatch, api.KindSet},
		{api.RecordState{Version: 4}, api.KindPatch, api.KindSet}, // a tombstone
		{api.RecordState{Version: 1, Data: json.RawMessage(`{}`), Exists: true}, api.KindPatch, api.KindPatch},
		{api.RecordState{Version: 1, Data: json.RawMessage(`{}`), Exists: true}, api.KindSet, api.KindSet},
	} {
		ch, _, err := api.Write{Kind: c.kind, Name: "r", Apply: value}.Next(c.cur)
		if err != nil || ch.Kind != c.want || ch.Created == c.cur.Exists {
			t.Errorf("%s on %+v: %s (created %v, %v), want %s", c.kind, c.cur, ch.Kind, ch.Created, err, c.want)
		}
	}
}

// TestNextRefusalBeforeCondition: a write that the rules refuse is
// refused whatever its condition, so that a 412 never tells a refused
// caller whether the record exists or at which version; a condition
// still wins over any other failure.
func TestNextRefusalBeforeCondition(t *testing.T) {
	denied := api.Errorf(api.CodePermissionDenied, "no")
	failed := api.Errorf(api.CodePatchFailed, "no such path")
	record := api.RecordState{Version: 4, Data: json.RawMessage(`{"x":1}`), Exists: true}
	for _, c := range []struct {
		name string
		w    api.Write
		cur  api.RecordState
		want api.Code
	}{
		{"stale If-Match, refused write", api.Write{Kind: api.KindSet, Cond: api.Cond{IfMatch: 7},
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return nil, denied }}, record, api.CodePermissionDenied},
		{"If-None-Match on a record, refused write", api.Write{Kind: api.KindSet, Cond: api.Cond{IfNoneMatch: true},
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return nil, denied }}, record, api.CodePermissionDenied},
		{"stale If-Match, refused delete", api.Write{Kind: api.KindDelete, Cond: api.Cond{IfMatch: 7},
			Check: func(json.RawMessage, bool) error { return denied }}, record, api.CodePermissionDenied},
		{"If-Match on a missing record, refused delete", api.Write{Kind: api.KindDelete, Cond: api.Cond{IfExists: true},
			Check: func(json.RawMessage, bool) error { return denied }}, api.RecordState{}, api.CodePermissionDenied},
		{"stale If-Match, failing patch", api.Write{Kind: api.KindPatch, Cond: api.Cond{IfMatch: 7},
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return nil, failed }}, record, api.CodeVersionConflict},
		{"stale If-Match, allowed write", api.Write{Kind: api.KindSet, Cond: api.Cond{IfMatch: 7},
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(`1`), nil }}, record, api.CodeVersionConflict},
		{"stale If-Match, allowed delete", api.Write{Kind: api.KindDelete, Cond: api.Cond{IfMatch: 7},
			Check: func(json.RawMessage, bool) error { return nil }}, record, api.CodeVersionConflict},
	} {
		c.w.Name = "r"
		_, next, err := c.w.Next(c.cur)
		if code := api.ErrorCode(err); code != c.want {
			t.Errorf("%s: %v (code %s), want %s", c.name, err, code, c.want)
		}
		if next.Version != c.cur.Version || string(next.Data) != string(c.cur.Data) {
			t.Errorf("%s: the record moved to %+v", c.name, next)
		}
	}
}
