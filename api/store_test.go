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
