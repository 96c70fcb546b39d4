package commit_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

func set(name, data string) api.Write {
	return api.Write{Kind: api.KindSet, Name: name, Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		return json.RawMessage(data), nil
	}}
}

// stored is a Read over fixed records, counting the reads.
func stored(reads *int, recs map[string]api.RecordState) func(string) (api.RecordState, error) {
	return func(name string) (api.RecordState, error) {
		*reads++
		return recs[name], nil
	}
}

// TestPrepareSeesEarlierWrites: a batch sees its own earlier writes and
// those of the batches before it; a failing batch leaves no trace.
func TestPrepareSeesEarlierWrites(t *testing.T) {
	var reads int
	rs := commit.Records{
		Read:    stored(&reads, map[string]api.RecordState{"a": {Version: 4, Data: json.RawMessage(`1`), Exists: true}}),
		Written: map[string]api.RecordState{},
	}
	changes, err := rs.Prepare([]api.Write{set("a", `2`), set("a", `3`), {Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`0`), Publisher: "u"}})
	if err != nil || len(changes) != 3 || changes[0].Version != 5 || changes[1].Version != 6 ||
		changes[2].Kind != api.KindEvent || changes[2].Publisher != "u" || changes[2].Seq != 0 {
		t.Fatalf("Prepare = %+v, %v; want versions 5 and 6, then the event", changes, err)
	}
	if st := rs.Written["a"]; st.Version != 6 || string(st.Data) != `3` || !st.Exists {
		t.Fatalf("Written[a] = %+v, want version 6", st)
	}
	// A batch that fails on its second write: its first is not kept.
	_, err = rs.Prepare([]api.Write{set("b", `1`), {Kind: api.KindDelete, Name: "c"}})
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeNotFound || e.Fields["index"] != 1 {
		t.Fatalf("Prepare = %v, want NOT_FOUND at index 1", err)
	}
	if _, ok := rs.Written["b"]; ok {
		t.Fatal("a failed batch's write was kept")
	}
	changes, err = rs.Prepare([]api.Write{{Kind: api.KindDelete, Name: "a", Cond: api.Cond{IfMatch: 6}}})
	if err != nil || changes[0].Version != 7 || rs.Written["a"].Exists {
		t.Fatalf("Prepare = %+v, %v; want a delete at version 7", changes, err)
	}
	if reads != 3 { // a once, b and c
		t.Fatalf("%d reads, want 3: a record written is not read again", reads)
	}
}

// TestPrepareErrors: an error that is not an *api.Error becomes INTERNAL
// with its cause and index; a failed read is INTERNAL; Check refuses
// events and values, never deletes.
func TestPrepareErrors(t *testing.T) {
	cause := errors.New("disk on fire")
	fails := api.Write{Kind: api.KindPatch, Name: "x", Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		return nil, cause
	}}
	rs := commit.Records{
		Read:    func(string) (api.RecordState, error) { return api.RecordState{Version: 1, Exists: true}, nil },
		Written: map[string]api.RecordState{},
	}
	_, err := rs.Prepare([]api.Write{set("y", `1`), fails})
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeInternal || e.Fields["index"] != 1 || !errors.Is(err, cause) {
		t.Fatalf("Prepare = %v, want INTERNAL at index 1 wrapping the cause", err)
	}

	rs.Read = func(string) (api.RecordState, error) { return api.RecordState{}, cause }
	if _, err := rs.Prepare([]api.Write{set("z", `1`)}); !api.IsCode(err, api.CodeInternal) || !errors.Is(err, cause) {
		t.Fatalf("Prepare with a failing read = %v, want INTERNAL wrapping the cause", err)
	}

	var checked []api.Kind
	rs.Read = func(string) (api.RecordState, error) { return api.RecordState{Version: 1, Exists: true}, nil }
	rs.Check = func(ch api.Change) *api.Error {
		checked = append(checked, ch.Kind)
		if string(ch.Data) == "bad" {
			return api.Errorf(api.CodeInvalidJSON, "bad")
		}
		return nil
	}
	_, err = rs.Prepare([]api.Write{{Kind: api.KindDelete, Name: "d"}, {Kind: api.KindEvent, Name: "e"}, set("f", "bad")})
	if !errors.As(err, &e) || e.Code != api.CodeInvalidJSON || e.Fields["index"] != 2 {
		t.Fatalf("Prepare = %v, want INVALID_JSON at index 2", err)
	}
	if len(checked) != 2 || checked[0] != api.KindEvent || checked[1] != api.KindSet {
		t.Fatalf("checked %v, want the event and the set", checked)
	}
	if len(rs.Written) != 0 {
		t.Fatalf("Written = %v after failed batches, want nothing", rs.Written)
	}
}
