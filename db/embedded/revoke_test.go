package embedded_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// TestRevocationsSurviveReopen: a revoked token is still revoked after
// the store is closed and opened again (a restarted server must go on
// refusing it), checkpoints of records in between change nothing, and
// positions go on after the last one given before.
func TestRevocationsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.OpenCheckpointEvery(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	for _, jti := range []string{"a", "b", "c"} {
		if err := s.Revoke(t.Context(), jti, until); err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // checkpoints between the revocations
			name := fmt.Sprintf("doc/%s/%d", jti, i)
			if _, err := s.Write(t.Context(), []api.Write{{Kind: api.KindEvent, Name: name, Data: []byte(`1`)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.TrimRevocations(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	before, err := s.Revocations(t.Context(), 0, 10)
	if err != nil || len(before) != 3 {
		t.Fatalf("Revocations = %+v, %v; want 3", before, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(t.Context(), "late", until); !errors.Is(err, embedded.ErrClosed) {
		t.Errorf("Revoke after Close = %v, want ErrClosed", err)
	}

	s, err = embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, err := s.Revocations(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 {
		t.Fatalf("after a reopen, revocations = %+v, want %+v", after, before)
	}
	for i := range after {
		if after[i].Seq != before[i].Seq || after[i].JTI != before[i].JTI || !after[i].Until.Equal(before[i].Until) {
			t.Errorf("after a reopen, revocation %d = %+v, want %+v", i, after[i], before[i])
		}
	}
	if err := s.Revoke(t.Context(), "d", until); err != nil {
		t.Fatal(err)
	}
	next, err := s.Revocations(t.Context(), before[2].Seq, 10)
	if err != nil || len(next) != 1 || next[0].JTI != "d" {
		t.Errorf("after a reopen, the next revocation = %+v, %v; want d after position %d", next, err, before[2].Seq)
	}
}
