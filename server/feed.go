package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/peer"
	"github.com/switchboard-dev/switchboard/realtime"
)

// feedTick is how often follow looks at the lease, the listener and the
// streams, and feedRetry the least time between two feeds it opens. The
// Sequencer reads the lease once a second (a faster look would mostly
// find nothing new, and wake an idle server for it), and a commit is
// notified as long as some listener has no feed, so a feed that comes a
// second later costs only NOTIFYs meanwhile. What wants the feed at
// once (a read that waits, a first stream) tells follow at once.
const (
	feedTick  = time.Second
	feedRetry = 500 * time.Millisecond
)

// idlePace is the pace (peer.Pace) at which the sequencer may gather
// this instance's feed once it has had no stream, and no read that
// waited for a position (postgres.Store.Waits), for idleAfter (to
// idleAfter+feedTick, as follow looks once a tick): nothing
// here needs the sequencer's commits soon then, and a gathered feed wakes
// it once for many commits rather than once for each. A read that waits
// makes the feed go at once (its sequencer writes what it gathered), and
// so does the first stream that opens.
const (
	idlePace  = 50 * time.Millisecond
	idleAfter = time.Second
)

// closeWait bounds how long a server that has served its last stream
// waits for its feed to end.
const closeWait = 250 * time.Millisecond

// follow keeps a feed from the sequencer while another instance holds
// its lease (peer.Follow), naming this instance's listener, so that the
// sequencer's commits need no NOTIFY (db/postgres's relay.go). A feed
// whose sequencer or listener changes is closed and another opened; a
// lease that is not known for a while (a read of it failed, or this
// instance gave it up as it drains) leaves the feed as it is. When a
// feed breaks, this instance reads the log's head, since what the feed
// sent last may not have arrived. It sets pace, the feeds', to idlePace
// while this instance is idle (hub has no stream, and no read waited:
// store.Waits), else to 0. It returns once ctx has ended and its feed
// with it.
func follow(ctx context.Context, seq *postgres.Sequencer, store *postgres.Store, hub *realtime.Hub, pace *peer.Pace, tlsConfig *tls.Config, log *slog.Logger) {
	type target struct {
		url, token string
		pid        uint32
	}
	var (
		cur    target
		stop   context.CancelFunc
		done   chan struct{} // closed once the feed has ended; nil: none open
		opened time.Time
		busy   = time.Now() // when this instance last needed its feed at once
	)
	t := time.NewTicker(feedTick)
	defer t.Stop()
	for {
		if hub.Stats.Streams.Load() > 0 {
			busy = time.Now()
		}
		if time.Since(busy) < idleAfter {
			pace.Set(0)
		} else {
			pace.Set(idlePace)
		}
		url, token, ok := seq.Lease()
		if !ok && !seq.Holds() { // not known for a while: follow on
			url, token, ok = cur.url, cur.token, cur.url != ""
		}
		var want target
		if ok {
			want = target{url, token, store.ListenerPID()}
		}
		if done != nil && want != cur {
			stop()
			<-done
			done = nil
		}
		if done == nil && want.pid != 0 && time.Since(opened) >= feedRetry {
			cur, opened = want, time.Now()
			stop, done = openFeed(ctx, want.url, want.token, want.pid, pace, store, tlsConfig, log)
		}
		select {
		case <-ctx.Done():
			if done != nil { // the streams are gone: the end need not be orderly
				stop()
				select {
				case <-done:
				case <-time.After(closeWait):
				}
			}
			return
		case <-t.C:
		case <-store.Waits():
			busy = time.Now()
		case <-hub.FirstStream():
			busy = time.Now()
		case <-done: // nil when none: never ready
			stop()
			done = nil
		}
	}
}

// openFeed opens a feed on a goroutine of its own, and catches up if it
// ended otherwise than in order; done is closed once it has ended. stop
// ends it.
func openFeed(ctx context.Context, url, token string, pid uint32, pace *peer.Pace, store *postgres.Store, tlsConfig *tls.Config, log *slog.Logger) (stop context.CancelFunc, done chan struct{}) {
	feed, stop := context.WithCancel(ctx)
	done = make(chan struct{})
	go func() {
		defer close(done)
		opened, err := peer.Follow(feed, url, token, pid, tlsConfig, pace, store.Relayed)
		if !opened || err == nil {
			return // nothing sent, or all of it read
		}
		log.Debug("the feed from the sequencer broke", "err", err)
		if err := store.CatchUp(ctx); err != nil && ctx.Err() == nil {
			log.Warn("catching up after a feed broke failed; changes reach this instance by its look at the log's head", "err", err)
		}
	}()
	return stop, done
}
