package realtime

import (
	"context"
	"testing"
	"time"
)

// TestSpread: every stream once, in order, in slices spaced over d (so a
// pass takes at least the gaps between its slices); nothing after ctx ends.
func TestSpread(t *testing.T) {
	list := make([]*Stream, 3*spreadSlice+1) // four slices, three gaps
	for i := range list {
		list[i] = new(Stream)
	}
	const d = 200 * time.Millisecond
	var got []*Stream
	began := time.Now()
	spread(context.Background(), list, d, func(s *Stream) { got = append(got, s) })
	if took := time.Since(began); took < d*3/4 {
		t.Errorf("a pass over four slices took %v: want their three gaps of %v", took, d/4)
	}
	if len(got) != len(list) {
		t.Fatalf("%d calls for %d streams", len(got), len(list))
	}
	for i := range list {
		if got[i] != list[i] {
			t.Fatalf("call %d was for another stream: want the list's order", i)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	spread(ctx, list, time.Hour, func(*Stream) {
		if n++; n == spreadSlice {
			cancel()
		}
	})
	if n != spreadSlice {
		t.Errorf("%d calls after ctx ended in the first slice; want that slice's %d", n, spreadSlice)
	}
}
