package realtime

import (
	"context"
	"time"
)

// spreadSlice is how many streams a pass over all of them (the hangup
// look, the heartbeat) handles at once: about 0.5 ms of work.
const spreadSlice = 256

// spread calls f for each stream of list in slices of spreadSlice, the
// slices spaced evenly over d, so that a pass over many thousand streams
// never holds a core for milliseconds at once, with other requests
// waiting behind it. It returns early, leaving the rest, when ctx ends.
func spread(ctx context.Context, list []*Stream, d time.Duration, f func(*Stream)) {
	slices := (len(list) + spreadSlice - 1) / spreadSlice
	var t *time.Timer
	for i := 0; i < len(list); i += spreadSlice {
		if i > 0 {
			if t == nil {
				t = time.NewTimer(d / time.Duration(slices))
				defer t.Stop()
			} else {
				t.Reset(d / time.Duration(slices))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		for _, s := range list[i:min(i+spreadSlice, len(list))] {
			f(s)
		}
	}
}
