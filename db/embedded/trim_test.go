package embedded_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// TestTrimWhileWriting trims everything over and over while 4 writers
// write and checkpoints come every 5 changes: a reader following the log
// gets either ErrTrimmed (and starts again at the head) or changes in
// sequence, and after a reopen the head and the next position are right.
func TestTrimWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.OpenCheckpointEvery(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				if _, err := s.Write(ctx, []api.Write{{Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`1`)}, {Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`2`)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var rg sync.WaitGroup
	rg.Go(func() {
		for !stop.Load() {
			if err := s.Trim(ctx, api.TrimOptions{Before: time.Now().Add(time.Hour)}); err != nil {
				t.Error(err)
			}
		}
	})
	rg.Go(func() {
		var after int64
		for !stop.Load() {
			cs, err := s.Changes(ctx, after, 7)
			if errors.Is(err, api.ErrTrimmed) {
				after, _, _ = s.Snapshot(ctx, nil)
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			for _, c := range cs {
				if c.Seq != after+1 {
					t.Errorf("after %d got %d", after, c.Seq)
					return
				}
				after = c.Seq
			}
		}
	})
	wg.Wait()
	stop.Store(true)
	rg.Wait()
	pos, _, _ := s.Snapshot(ctx, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, _, _ := s.Snapshot(ctx, nil); p != pos {
		t.Fatalf("head after reopen %d, want %d", p, pos)
	}
	if _, err := s.Changes(ctx, pos-1, 10); err != nil && !errors.Is(err, api.ErrTrimmed) {
		t.Fatal(err)
	}
	cs, err := s.Write(ctx, []api.Write{{Kind: api.KindEvent, Name: "e"}})
	if err != nil || cs[0].Seq != pos+1 {
		t.Fatalf("next write %+v %v, want seq %d", cs, err, pos+1)
	}
}
