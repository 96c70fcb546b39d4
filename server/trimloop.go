package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// SizeTrimEvery is how often the log is trimmed when it has a size bound,
// so that a burst outgrows the bound by little: at the fastest rate
// measured (~27 GB/h, 7.5 MB/s) by about 40 MB between two trims. The
// end-to-end tests wait for one such trim.
const SizeTrimEvery = 5 * time.Second

// trimLoop removes changes and streams older than the retention window
// every min(retention/4, 1m) and, with a size bound (maxBytes > 0), the
// oldest changes beyond it every SizeTrimEvery. The trims in between pass
// no age, which spares the embedded store a walk over every stream.
//
// A trim by age removes the streams not updated within the retention, and
// an open stream's stored state is updated only when it opens, changes
// its subscriptions or closes: before such a trim, keep marks this
// instance's open streams updated, at least every retention/2, so that a
// stream that lives longer than the retention keeps its state and its
// resume (every instance does so for its own).
func trimLoop(ctx context.Context, store api.Store, retention time.Duration, maxBytes int64, keep func(context.Context), log *slog.Logger) {
	ageEvery := min(retention/4, time.Minute)
	every := ageEvery
	if maxBytes > 0 {
		every = min(every, SizeTrimEvery)
	}
	perAge := max(1, int(ageEvery/every)) // trims per trim by age
	t := time.NewTicker(every)
	defer t.Stop()
	var kept time.Time
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o := api.TrimOptions{MaxBytes: maxBytes}
		if i%perAge == 0 {
			if time.Since(kept) >= retention/2 {
				keep(ctx)
				kept = time.Now()
			}
			o.Before = time.Now().Add(-retention)
		}
		if err := store.Trim(ctx, o); err != nil && ctx.Err() == nil {
			log.Error("trim change log", "err", err)
		}
	}
}
