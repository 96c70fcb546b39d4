package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// TopicPresence is the Bus topic on which an instance announces that it
// changed its presence rows: every instance then reads the online set
// again.
const TopicPresence = "presence"

// PresenceConfig holds the timings of presence. Zero durations take the
// defaults, except LeaveGrace (0: no grace).
type PresenceConfig struct {
	// Instance names this instance's rows: unique among the running
	// instances (NewInstanceID).
	Instance string
	// LeaveGrace is how long a user whose last stream here closed keeps
	// their row: a stream that comes back within it, here or elsewhere,
	// causes no offline/online flap.
	LeaveGrace time.Duration
	// Heartbeat is how often the rows are renewed (default 5s), and
	// Expiry how long a renewal lasts (default 20s): the rows of an
	// instance killed without closing its streams stop counting within
	// Expiry, and every instance sees it within Refresh more.
	Heartbeat, Expiry time.Duration
	// Refresh is how often the online set is read again when nothing
	// wakes it (default 3s), so that expired rows are seen.
	Refresh time.Duration
}

// The defaults keep a dead instance's users online at most 23 s after it
// died (Expiry after its last renewal, and Refresh): the contract says 30.
const (
	defaultPresenceHeartbeat = 5 * time.Second
	defaultPresenceExpiry    = 20 * time.Second
	defaultPresenceRefresh   = 3 * time.Second
)

// NewInstanceID returns a random id for this process: it names the rows
// that presence and listening keep in the Store for it.
func NewInstanceID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Presence counts the signed-in users of this instance's streams into
// presence rows in the Store (the truth, shared by every instance), and
// feeds presence subscriptions from the online set it reads back. It is
// the hub's presence Feed and Observer (Hub.SetPresence).
//
// One goroutine, Run, owns the rows of this instance: it writes them,
// renews them, announces changes on the Bus and reads the online set,
// coalescing the wake-ups that come meanwhile into one more read. Opened
// and Closed only count, under mu; the view and the watchers have their
// own lock, wmu. Presence is safe for concurrent use.
type Presence struct {
	store  api.PresenceStore
	bus    api.Bus
	access Access
	cfg    PresenceConfig
	log    *slog.Logger

	mu    sync.Mutex
	local map[string]*holder // users with streams here, or in their grace
	stale bool               // the online set must be read again
	wake  chan struct{}

	written map[string]bool // Run's own: this instance's rows in the store

	*feed // the view and the watchers (presencefeed.go)
}

// holder counts a user's streams on this instance; left is when the last
// one closed.
type holder struct {
	streams int
	left    time.Time
}

// NewPresence returns the presence service of this instance. Run must run
// for it to write rows and feed subscriptions.
func NewPresence(store api.PresenceStore, bus api.Bus, access Access, cfg PresenceConfig, log *slog.Logger) *Presence {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultPresenceHeartbeat
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = defaultPresenceExpiry
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = defaultPresenceRefresh
	}
	return &Presence{
		store: store, bus: bus, access: access, cfg: cfg, log: log,
		local:   make(map[string]*holder),
		written: make(map[string]bool),
		wake:    make(chan struct{}, 1),
		feed:    newFeed(),
	}
}

// counted returns the presence user of a stream, "" for none: anonymous
// streams are not presence, nor are ids that cannot be named.
func counted(s *Stream) string {
	if api.ValidateUserID(s.User.ID) != nil {
		return ""
	}
	return s.User.ID
}

// Opened counts a stream of this instance (the hub's Observer), and puts
// its user online in the view at once: under the view's lock, so that a
// read applied meanwhile counts the stream too (apply).
func (p *Presence) Opened(s *Stream) {
	u := counted(s)
	if u == "" {
		return
	}
	p.lock()
	p.mu.Lock()
	h := p.local[u]
	if h == nil {
		h = &holder{}
		p.local[u] = h
	}
	h.streams++
	p.mu.Unlock()
	p.cameOnline(u)
	p.unlock()
	signal(p.wake)
}

// Closed uncounts a stream. The user's row stays for LeaveGrace after
// their last stream here closes.
func (p *Presence) Closed(s *Stream) {
	u := counted(s)
	if u == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.local[u]
	if h == nil || h.streams == 0 {
		return
	}
	if h.streams--; h.streams == 0 {
		h.left = time.Now()
		time.AfterFunc(p.cfg.LeaveGrace, func() { signal(p.wake) })
	}
}

// Run writes this instance's rows, keeps them alive and feeds the
// watchers until ctx ends. Then it sets its rows to expire LeaveGrace
// from now, rather than removing them: users whose streams resume on
// another instance do not flap, the others go offline then.
func (p *Presence) Run(ctx context.Context) {
	stop := p.bus.Subscribe(TopicPresence, func([]byte) {
		p.mu.Lock()
		p.stale = true
		p.mu.Unlock()
		signal(p.wake)
	})
	defer stop()
	heartbeat := time.NewTicker(p.cfg.Heartbeat)
	defer heartbeat.Stop()
	refresh := time.NewTicker(p.cfg.Refresh)
	defer refresh.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	stale, renew := true, false
	for {
		if err := p.sync(ctx, renew); err != nil {
			p.log.Error("write presence rows", "err", err)
			retry.Reset(time.Second)
		} else {
			renew = false
		}
		p.mu.Lock()
		stale = stale || p.stale
		p.stale = false
		p.mu.Unlock()
		if stale {
			if err := p.read(ctx); err != nil {
				p.log.Error("read presence", "err", err)
				retry.Reset(time.Second)
			} else {
				stale = false
			}
		}
		select {
		case <-ctx.Done():
			p.leave()
			return
		case <-p.wake:
		case <-retry.C:
			stale = true
		case <-heartbeat.C:
			renew = true
		case <-refresh.C:
			stale = true
		}
	}
}

// localUsers returns this instance's users at now: with streams, or in
// their grace.
func (p *Presence) localUsers(now time.Time) map[string]bool {
	users := make(map[string]bool)
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, h := range p.local {
		if h.present(now, p.cfg.LeaveGrace) {
			users[u] = true
		}
	}
	return users
}

// present says whether the holder's user is online here at now: with
// streams, or in their grace.
func (h *holder) present(now time.Time, grace time.Duration) bool {
	return h.streams > 0 || now.Before(h.left.Add(grace))
}

// sync makes this instance's rows those of its users (with streams, or in
// their grace): it adds and removes rows, renews every row when renew is
// set, and announces a change of the rows on the Bus.
func (p *Presence) sync(ctx context.Context, renew bool) error {
	now := time.Now()
	keep := make(map[string]bool)
	p.mu.Lock()
	for u, h := range p.local {
		if h.present(now, p.cfg.LeaveGrace) {
			keep[u] = true
		} else {
			delete(p.local, u)
			p.stale = true // the view has them online (Opened) even if no row was written
		}
	}
	p.mu.Unlock()
	var put, gone []string
	changed := false
	for u := range keep {
		if !p.written[u] {
			changed = true
			put = append(put, u)
		} else if renew {
			put = append(put, u)
		}
	}
	for u := range p.written {
		if !keep[u] {
			gone = append(gone, u)
		}
	}
	if len(put) > 0 {
		if err := p.store.PutPresence(ctx, p.cfg.Instance, put, now.Add(p.cfg.Expiry)); err != nil {
			return err
		}
		for _, u := range put {
			p.written[u] = true
		}
	}
	if len(gone) > 0 {
		if err := p.store.RemovePresence(ctx, p.cfg.Instance, gone); err != nil {
			return err
		}
		for _, u := range gone {
			delete(p.written, u)
		}
		changed = true
	}
	if renew {
		// Rows of instances that died: they count no more, and go.
		if err := p.store.ExpirePresence(ctx, now); err != nil {
			return err
		}
	}
	if changed {
		p.mu.Lock()
		p.stale = true // read at once, not only when the Bus comes back
		p.mu.Unlock()
		if err := p.bus.Send(ctx, TopicPresence, nil); err != nil {
			p.log.Warn("announce presence", "err", err) // the others see it at their next refresh
		}
	}
	return nil
}

// read reads the online set and tells the watchers what changed.
func (p *Presence) read(ctx context.Context) error {
	online, err := p.store.Online(ctx, time.Now(), nil)
	if err != nil {
		return err
	}
	p.apply(online)
	return nil
}

// leave sets this instance's rows to expire LeaveGrace from now.
func (p *Presence) leave() {
	if len(p.written) == 0 {
		return
	}
	users := make([]string, 0, len(p.written))
	for u := range p.written {
		users = append(users, u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.store.PutPresence(ctx, p.cfg.Instance, users, time.Now().Add(p.cfg.LeaveGrace)); err != nil {
		p.log.Warn("let presence rows expire", "err", err) // they expire anyway, within Expiry
	}
}
