package embedded_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// A deleted record's tombstone is in the files: after the store is closed
// and opened again, creating the record continues after the delete's
// version, and the tombstone is still hidden from every read.
func TestTombstoneSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	set := func(s *embedded.Store, name string) api.Change {
		t.Helper()
		cs, err := s.Write(t.Context(), []api.Write{{Kind: api.KindSet, Name: name,
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(`{}`), nil }}})
		if err != nil {
			t.Fatal(err)
		}
		return cs[0]
	}
	set(s, "doc")
	set(s, "doc")
	if _, err := s.Write(t.Context(), []api.Write{{Kind: api.KindDelete, Name: "doc"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(t.Context(), "doc"); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("Get after reopen: %v, want NOT_FOUND", err)
	}
	if recs, err := s.List(t.Context(), "", "", 10); err != nil || len(recs) != 0 {
		t.Errorf("List after reopen = %+v, %v; want none", recs, err)
	}
	if c := set(s, "doc"); c.Version != 4 {
		t.Errorf("created again at version %d after reopen, want 4 (after the delete's 3)", c.Version)
	}
}
