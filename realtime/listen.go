package realtime

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Listening (listen=PREFIX/*): this instance's part of the state that
// every instance shares through api.Listening. Listen tells the Store of
// this instance's demand (its streams' exact record and event
// subscriptions, from the hub's index) and of its listeners (listen
// subscriptions, through the Feed seam), renews their rows, and tells each
// of its listening streams what the Store has chosen for it. The Store is
// the truth: what a listener has been told is compared with the Store's
// choices whenever the Bus says that they changed, and on every renewal.
//
// Permissions: before a listener is told active of a name, its stream's
// user must be allowed to listen to it (Access, ActListen; a record's
// current value is read when its rule depends on the data). A refused
// listener is not told: it declines the name in the Store, which chooses
// another listener, on any instance, and wakes its instance. When the
// rules change (the hub counts Hub.RulesChanged calls, which Run notices
// at its next work, at the latest at the next renewal), this instance
// forgets its listeners' declines in the Store and checks every name of
// its listeners again, those told active included.

// TopicListen is the Bus topic of listening's wake-ups: "p" (a prefix may
// be listened on that was not: read them again) or "i:<instance>" (that
// instance's choices changed).
const TopicListen = "listen"

// ListenConfig holds the settings of listening.
type ListenConfig struct {
	// Instance identifies this process among every instance: its rows and
	// its listeners' choices carry it. Unique per process.
	Instance string
	// LeaveGrace is how long a name stays in demand after its last local
	// subscriber left, so that a stream that comes back (or resumes on
	// another instance) causes no inactive/active flap.
	LeaveGrace time.Duration
	// Renew is how often this instance renews its rows and sweeps the
	// expired ones of every instance (default 5s); TTL is how long its
	// rows live without a renewal (default 15s). A killed instance's
	// demand and listeners are gone within TTL+Renew.
	Renew time.Duration
	TTL   time.Duration
}

// Listen serves listen subscriptions and tracks demand. It is safe for
// concurrent use; one goroutine (Run) does its Store work, in order.
type Listen struct {
	store api.Listening
	bus   api.Bus
	hub   *Hub // its Access, its Store for records' values, its rules generation
	cfg   ListenConfig
	log   *slog.Logger

	mu        sync.Mutex
	prefixes  map[string]bool // listened on, as last read or added here
	demand    map[api.ListenKey]*demandState
	dirty     map[api.ListenKey]bool // demand that may differ from its row
	writing   api.ListenKey          // the demand Run is storing
	listeners map[string]*listener   // this instance's live ones, by id
	watched   map[Watch]*listener
	pending   map[string]*listener // whose row may not be as it should: see listener
	gone      int                  // of pending, the gone ones
	purge     bool                 // remove every row of a listener not live (gone ones were let go)
	busy      bool                 // Run is at work (tests wait for it to settle)
	resync    bool                 // read the choices again
	reload    bool                 // read the prefixes again
	next      int                  // listener ids
	kick      chan struct{}

	failed time.Time // Run's own: when a listener call last failed (wait a second)

	rulesGen uint64 // Run's own: the hub's rules generation it last acted on
	forget   bool   // Run's own: the Store keeps declines of rules gone
	recheck  bool   // Run's own: check the names told active too, not only new ones

	told func(listener string, k api.ListenKey, active bool) // tests: called for each frame pushed, before Run
}

// maxGone bounds the listeners gone from this instance whose rows wait to
// be removed (while the Store is down, say). Past it they are let go, and
// Run removes every row of this instance's listeners that are not live in
// one call (RemoveListenersExcept) instead.
const maxGone = 1024

// listener is a listen subscription of one of this instance's streams.
// Its row in the Store should exist while it is live and not once it is
// gone (unwatched): Run adds or removes it while it is pending. Changes
// coalesce: a listener gone before Run tried to add it costs no Store
// work, and a stream that listens again on the prefix of its listener
// still waiting to be removed gets that one back.
type listener struct {
	api.Listener
	w      Watch
	told   map[api.ListenKey]bool // the names it was told active
	gone   bool
	tried  bool // Run began to add it: its row may exist
	stored bool // Run added it, and did not begin to remove it since
}

// NewListen returns the listening service of hub's streams and makes the
// hub use it. Run it with Run.
func NewListen(store api.Listening, bus api.Bus, hub *Hub, cfg ListenConfig, log *slog.Logger) *Listen {
	if cfg.Renew <= 0 {
		cfg.Renew = 5 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * cfg.Renew
	}
	l := &Listen{
		store: store, bus: bus, hub: hub, cfg: cfg, log: log,
		rulesGen:  hub.rulesGen.Load(),
		prefixes:  map[string]bool{},
		demand:    map[api.ListenKey]*demandState{},
		dirty:     map[api.ListenKey]bool{},
		listeners: map[string]*listener{},
		watched:   map[Watch]*listener{},
		pending:   map[string]*listener{},
		reload:    true,
		kick:      make(chan struct{}, 1),
	}
	hub.SetListen(l)
	hub.mu.Lock()
	hub.demand = l.onDemand
	hub.mu.Unlock()
	return l
}

// Watch registers a listener for w. It says nothing at once: the names
// chosen for it are pushed as Run learns of them.
func (l *Listen) Watch(w Watch) [][]byte {
	prefix, isPrefix, err := api.ValidatePattern(w.Subscription().Listen)
	if err != nil || !isPrefix {
		return nil // newSub refused it already
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watched[w] != nil {
		return nil
	}
	if li := l.revive(w, prefix); li != nil {
		l.watched[w], l.listeners[li.ID] = li, li
		return nil
	}
	l.next++
	li := &listener{
		Listener: api.Listener{ID: l.cfg.Instance + "-" + strconv.Itoa(l.next), Instance: l.cfg.Instance, Stream: w.Stream().ID, Prefix: prefix},
		w:        w, told: map[api.ListenKey]bool{},
	}
	l.watched[w], l.listeners[li.ID], l.pending[li.ID] = li, li, li
	signal(l.kick)
	return nil
}

// revive returns the stream's gone listener of prefix that waits to be
// removed, live again for w, or nil: when its row is stored, nothing is
// left to do but tell the new subscription its names; otherwise it waits
// to be added again. Under l.mu.
func (l *Listen) revive(w Watch, prefix string) *listener {
	if l.gone == 0 {
		return nil
	}
	for _, li := range l.pending {
		if !li.gone || li.Stream != w.Stream().ID || li.Prefix != prefix {
			continue
		}
		l.gone--
		li.gone, li.w, li.told = false, w, map[api.ListenKey]bool{}
		if li.stored {
			delete(l.pending, li.ID)
			l.resync = true // tell the new subscription its names
		}
		signal(l.kick)
		return li
	}
	return nil
}

// Unwatch forgets the listener of w; Run removes it from the Store, which
// hands its names over.
func (l *Listen) Unwatch(w Watch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := l.watched[w]
	if li == nil {
		return
	}
	delete(l.watched, w)
	delete(l.listeners, li.ID)
	li.gone = true
	if !li.tried {
		delete(l.pending, li.ID) // never stored: nothing to undo
		return
	}
	l.pending[li.ID] = li // maybe pending already, to be added: live, not counted
	l.gone++
	if l.gone > maxGone {
		for id, p := range l.pending {
			if p.gone {
				delete(l.pending, id)
			}
		}
		l.gone, l.purge = 0, true
	}
	signal(l.kick)
}

// Run does the Store work until ctx ends: listeners added and removed,
// demand, renewals, and what listeners are told.
// rulesChanged wakes Run, which sees the new rules' generation and checks
// the names of this instance's listeners again (Hub.RulesChanged).
func (l *Listen) rulesChanged() { signal(l.kick) }

func (l *Listen) Run(ctx context.Context) {
	stop := l.bus.Subscribe(TopicListen, l.onWake)
	defer stop()
	renew := time.NewTicker(l.cfg.Renew)
	defer renew.Stop()
	later := time.NewTimer(time.Hour)
	defer later.Stop()
	for {
		next := l.work(ctx)
		if !next.IsZero() {
			later.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			l.finish()
			return
		case <-l.kick:
		case <-later.C:
		case <-renew.C:
			l.renew(ctx)
		}
	}
}

// onWake handles the Bus: nil (wake-ups may have been missed) reads
// everything again.
func (l *Listen) onWake(p []byte) {
	l.mu.Lock()
	switch s := string(p); {
	case p == nil:
		l.reload, l.resync = true, true
	case s == "p":
		l.reload = true
	case s == "i:"+l.cfg.Instance:
		l.resync = true
	default:
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	signal(l.kick)
}

// work does what is waiting, and returns when it should run again
// (zero: when woken).
func (l *Listen) work(ctx context.Context) time.Time {
	l.mu.Lock()
	l.busy = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.busy = false
		l.mu.Unlock()
	}()
	w := map[string]bool{}
	if g := l.hub.rulesGen.Load(); g != l.rulesGen {
		l.rulesGen, l.forget, l.recheck = g, true, true
	}
	if l.forget {
		wake, err := l.store.ForgetDeclines(ctx, l.cfg.Instance, time.Now())
		for _, i := range wake {
			w[i] = true
		}
		if err != nil {
			l.log.Warn("listening: forget the declines", "err", err)
		} else {
			l.forget = false
			l.mu.Lock()
			l.resync = true
			l.mu.Unlock()
		}
	}
	retry := l.forget
	if time.Since(l.failed) >= time.Second { // not at every kick while the Store is down
		if l.applyOps(ctx, w) {
			retry, l.failed = true, time.Now()
		}
	} else {
		retry = true
	}
	l.mu.Lock()
	reload := l.reload
	l.reload = false
	l.mu.Unlock()
	if reload {
		if err := l.readPrefixes(ctx); err != nil {
			l.log.Warn("listening: read the listened prefixes", "err", err)
			retry = true
		}
	}
	next := l.writeDemand(ctx, w)
	if len(w) > 0 {
		l.wake(ctx, w)
	}
	l.mu.Lock()
	resync := l.resync
	l.resync = false
	l.mu.Unlock()
	if resync {
		if err := l.tell(ctx); err != nil {
			l.log.Warn("listening: read the choices", "err", err)
			retry = true
		}
	}
	if retry {
		l.mu.Lock()
		l.resync, l.reload = l.resync || resync, l.reload || reload
		l.mu.Unlock()
		if t := time.Now().Add(time.Second); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// applyOps makes the Store's rows of this instance's listeners what they
// should be: every row of a listener not live removed first if some were
// let go, then each pending listener added or removed. It reports whether
// a call failed (the rest waits for a retry).
func (l *Listen) applyOps(ctx context.Context, w map[string]bool) (failed bool) {
	if !l.purgeRows(ctx, w) {
		return true
	}
	for {
		l.mu.Lock()
		var li *listener
		for _, li = range l.pending {
			break
		}
		if li == nil {
			l.mu.Unlock()
			return false
		}
		delete(l.pending, li.ID)
		add := !li.gone
		if add {
			li.tried = true
		} else {
			l.gone--
			li.stored = false
		}
		l.mu.Unlock()
		now := time.Now()
		var wake []string
		var err error
		if add {
			wake, err = l.store.AddListener(ctx, li.Listener, now.Add(l.cfg.TTL), now)
		} else {
			wake, err = l.store.RemoveListener(ctx, li.ID, now)
		}
		for _, i := range wake {
			w[i] = true
		}
		l.mu.Lock()
		if err != nil {
			l.log.Warn("listening: store a listener", "prefix", li.Prefix, "add", add, "err", err)
			l.retry(li)
			l.mu.Unlock()
			return true
		}
		li.stored = add
		if add && !l.prefixes[li.Prefix] {
			l.prefixes[li.Prefix] = true
			l.markUnder(li.Prefix)
			l.mu.Unlock()
			// Other instances may hold demand under it that they do not store.
			if err := l.bus.Send(ctx, TopicListen, []byte("p")); err != nil {
				l.log.Warn("listening: announce a prefix", "err", err)
			}
			continue
		}
		l.mu.Unlock()
	}
}

// retry makes li pending again after a failed call, unless an Unwatch
// made it pending meanwhile or a purge let it go. Under l.mu.
func (l *Listen) retry(li *listener) {
	if l.pending[li.ID] != nil {
		return
	}
	if li.gone {
		if l.purge {
			return // its row goes with the purge
		}
		l.gone++
	}
	l.pending[li.ID] = li
}

// purgeRows removes every row of this instance's listeners that are not
// live, when gone ones were let go. It reports whether that is done.
func (l *Listen) purgeRows(ctx context.Context, w map[string]bool) bool {
	l.mu.Lock()
	if !l.purge {
		l.mu.Unlock()
		return true
	}
	keep := make([]string, 0, len(l.listeners))
	for id, li := range l.listeners {
		if li.tried {
			keep = append(keep, id)
		}
	}
	l.mu.Unlock()
	wake, err := l.store.RemoveListenersExcept(ctx, l.cfg.Instance, keep, time.Now())
	for _, i := range wake {
		w[i] = true
	}
	if err != nil {
		l.log.Warn("listening: remove the listeners gone", "err", err)
		return false
	}
	l.mu.Lock()
	l.purge = false
	l.mu.Unlock()
	return true
}

// readPrefixes reads the listened prefixes, and marks the local demand
// under a new one to be stored.
func (l *Listen) readPrefixes(ctx context.Context) error {
	ps, err := l.store.ListenPrefixes(ctx, time.Now())
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fresh := make(map[string]bool, len(ps))
	for _, p := range ps {
		fresh[p] = true
		if !l.prefixes[p] {
			l.markUnder(p)
		}
	}
	for _, li := range l.listeners { // added here, maybe not stored yet
		fresh[li.Prefix] = true
	}
	l.prefixes = fresh
	return nil
}

// wake tells the instances in w that their choices changed: this one
// directly, the others through the Bus.
func (l *Listen) wake(ctx context.Context, w map[string]bool) {
	for i := range w {
		if i == l.cfg.Instance {
			l.mu.Lock()
			l.resync = true
			l.mu.Unlock()
			continue
		}
		if err := l.bus.Send(ctx, TopicListen, []byte("i:"+i)); err != nil {
			l.log.Warn("listening: wake an instance", "err", err)
		}
	}
}

// tell reads this instance's choices, declines those its listeners'
// users may not listen to, and pushes to each listener the difference
// from what it was told.
func (l *Listen) tell(ctx context.Context) error {
	cs, err := l.store.Chosen(ctx, l.cfg.Instance)
	if err != nil {
		return err
	}
	want := make(map[string][]api.ListenKey)
	for _, c := range cs {
		want[c.Listener] = append(want[c.Listener], c.ListenKey)
	}
	refused, err := l.refuse(ctx, want)
	if err != nil {
		return err
	}
	l.recheck = false
	type push struct {
		w     Watch // read under l.mu: a revived listener changes it
		frame []byte
	}
	var out []push
	l.mu.Lock()
	for id, li := range l.listeners {
		now := make(map[api.ListenKey]bool, len(want[id]))
		for _, k := range want[id] {
			if !refused[choiceOf{id, k}] {
				now[k] = true
			}
		}
		var changed []api.ListenKey
		for k := range li.told {
			if !now[k] {
				changed = append(changed, k)
			}
		}
		for k := range now {
			if !li.told[k] {
				changed = append(changed, k)
			}
		}
		slices.SortFunc(changed, func(a, b api.ListenKey) int {
			return strings.Compare(a.Name+" "+a.Kind, b.Name+" "+b.Kind)
		})
		for _, k := range changed {
			if now[k] {
				li.told[k] = true
			} else {
				delete(li.told, k)
			}
			out = append(out, push{li.w, listenFrame(k, now[k])})
			if l.told != nil {
				l.told(id, k, now[k])
			}
		}
	}
	l.mu.Unlock()
	for _, p := range out {
		p.w.Push(p.frame)
	}
	return nil
}

// choiceOf is a name chosen for a listener.
type choiceOf struct {
	listener string
	api.ListenKey
}

// refuse checks the names chosen for this instance's listeners that they
// were not told yet (every one after the rules changed) against the
// permission rules, and declines in the Store those that their stream's
// user may not listen to: it returns them. The Store then chooses other
// listeners; their instances are woken. An error leaves the rest unchecked
// and not told, for a retry.
func (l *Listen) refuse(ctx context.Context, want map[string][]api.ListenKey) (map[choiceOf]bool, error) {
	type check struct {
		choiceOf
		user api.User
	}
	var checks []check
	l.mu.Lock()
	for id, keys := range want {
		li := l.listeners[id]
		if li == nil {
			continue
		}
		for _, k := range keys {
			if l.recheck || !li.told[k] {
				checks = append(checks, check{choiceOf{id, k}, li.w.Stream().User})
			}
		}
	}
	l.mu.Unlock()
	refused := map[choiceOf]bool{}
	w := map[string]bool{}
	defer func() {
		if len(w) > 0 {
			l.wake(ctx, w)
			signal(l.kick) // this instance's own wake-up is read at the next work
		}
	}()
	for _, c := range checks {
		ok, err := l.mayListen(ctx, c.user, c.ListenKey)
		if err != nil {
			return nil, err
		}
		if ok {
			continue
		}
		refused[c.choiceOf] = true
		wake, err := l.store.DeclineListen(ctx, c.ListenKey, c.listener, time.Now())
		for _, i := range wake {
			w[i] = true
		}
		if err != nil {
			return nil, err
		}
	}
	return refused, nil
}

// mayListen reports whether user may listen to key: a record's rule that
// depends on the data is given the record's current value (none when it
// does not exist).
func (l *Listen) mayListen(ctx context.Context, user api.User, key api.ListenKey) (bool, error) {
	a := l.hub.access
	r := Request{User: user, Section: SecRecord, Action: ActListen, Name: key.Name}
	if key.Kind == api.ListenEvent {
		r.Section = SecEvent
	}
	if r.Section == SecRecord && a.DependsOnData(SecRecord, ActListen, key.Name) {
		rec, err := l.hub.store.Get(ctx, key.Name)
		switch {
		case err == nil:
			r.Data = rec.Data
		case !api.IsCode(err, api.CodeNotFound):
			return false, err
		}
	}
	return a.Allow(ctx, r) == nil, nil
}

// renew extends this instance's rows, sweeps the expired rows of every
// instance, and reads prefixes and choices again (wake-ups may have been
// lost).
func (l *Listen) renew(ctx context.Context) {
	now := time.Now()
	if err := l.store.RenewListen(ctx, l.cfg.Instance, now.Add(l.cfg.TTL)); err != nil {
		l.log.Warn("listening: renew", "err", err)
	}
	wake, err := l.store.ExpireListen(ctx, now)
	if err != nil {
		l.log.Warn("listening: expire", "err", err)
	}
	w := map[string]bool{}
	for _, i := range wake {
		w[i] = true
	}
	l.wake(ctx, w)
	l.mu.Lock()
	l.reload, l.resync = true, true
	l.mu.Unlock()
}

// finish removes the listeners waiting to be removed as the server stops,
// so that their names go to other instances' listeners now; this
// instance's demand expires with its rows, which lets streams resume
// elsewhere without a flap.
func (l *Listen) finish() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w := map[string]bool{}
	l.applyOps(ctx, w)
	delete(w, l.cfg.Instance)
	l.wake(ctx, w)
}

// listenFrame is the listen frame of a name.
func listenFrame(k api.ListenKey, active bool) []byte {
	d := append([]byte(`{"kind":`), appendString(nil, k.Kind)...)
	d = append(d, `,"name":`...)
	d = appendString(d, k.Name)
	d = append(d, `,"active":`...)
	d = strconv.AppendBool(d, active)
	d = append(d, '}')
	return appendFrame(nil, "listen", d)
}
