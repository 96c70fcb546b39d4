package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// TopicStreams is the Bus topic that carries subscription changes to the
// instance holding a stream.
const TopicStreams = "streams"

// HubConfig holds the limits of streams.
type HubConfig struct {
	Heartbeat   time.Duration // comment line interval
	MaxLifetime time.Duration // a stream ends itself after this, less up to 10% jitter
	Retry       time.Duration // the SSE retry: the browser waits this long to resume
	BufferBytes int           // frames queued for one stream before it is cut as too slow; a larger frame is never queued (oversize.go)
	// MaxSubscriptions bounds the subscriptions of one stream, on opening
	// and on adding one (0: no bound).
	MaxSubscriptions int
	// MaxCollection bounds the records of one collection subscription
	// (MAX_COLLECTION_RECORDS; 0: no bound).
	MaxCollection int
	// MaxStreams bounds the open streams of this instance, and
	// MaxStreamsPerUser those of one signed-in user (0: no bound).
	MaxStreams, MaxStreamsPerUser int
	// DrainRetry and DrainSpread are the retry a drain ends each stream
	// with: DrainRetry plus a uniform share of DrainSpread (end.go).
	// DrainRetry 0: Retry.
	DrainRetry  time.Duration
	DrainSpread time.Duration
	// Coalesce is how long deliveries wait for more to join them in one
	// write to a detached stream (coalesce.go; 0: none, at most MaxCoalesce).
	Coalesce time.Duration
}

// Stats counts what the hub does; every field is safe to read at any time.
type Stats struct {
	Streams         atomic.Int64 // open streams
	Subscriptions   atomic.Int64 // their subscriptions
	Frames          atomic.Int64 // frames written to streams
	SlowDisconnects atomic.Int64 // streams cut because their queue was full
	Dropped         atomic.Int64 // changes not queued for a stream: its queue was full, or it had just ended (it resumes from its last id)
}

// Hub indexes the subscriptions of this instance's open streams and fans
// changes out to them. One goroutine (Run) reads the change log in order and
// hands each change, encoded once, to the queue of every stream that
// subscribes to it; it never waits on a stream. Hub is safe for concurrent use.
type Hub struct {
	store  api.Store
	bus    api.Bus
	access Access
	cfg    HubConfig
	log    *slog.Logger
	Stats  Stats

	mu       sync.RWMutex
	records  map[string]map[*Stream]int // by record name: how many subs of the stream
	events   map[string]map[*Stream]int // by event name
	prefixes map[string]map[*Stream]int // by event prefix, with its '/' ("" for event=*)
	colls    map[string]map[*Stream]int // by collection prefix, with its '/' ("" for record=*)
	streams  map[string]*Stream         // by stream id
	pos      atomic.Int64               // the last change handed out; moves under mu's read lock
	gen      uint64                     // dispatch generation, owned by Run
	ready    []*Stream                  // detached streams to schedule, owned by Run

	presence Feed     // serves presence subscriptions; nil: refused
	listen   Feed     // serves listen subscriptions; nil: refused
	observer Observer // told of every stream; may be nil

	demand demandHook // told of exact names' local subscribers (listendemand.go); may be nil

	pool     *pool
	wake     chan struct{}
	started  chan struct{} // closed once Run has its start position; Open waits for it
	draining chan struct{}
	drain    sync.Once
	gone     chan struct{} // signalled when a stream is forgotten, for WaitStreams
	first    chan struct{} // signalled when a stream registers while none is (FirstStream)
	touching inflight      // the last touches of detached streams (cleanup), for WaitStreams

	revocations atomic.Pointer[Revocations] // the revoked tokens, once NewRevocations has the hub (hub_revoke.go)

	rulesGen atomic.Uint64 // counts RulesChanged calls (streamperm_reload.go)

	streamSlots slots         // streams open or opening, in all and by user (slots.go)
	reaping     sync.Mutex    // one reap at a time (hangup.go)
	reapAll     int64         // under reaping: the monotonic time before which no reap looks at every stream
	lookEach    time.Duration // how often watchHangups looks: lookEvery
	measures    Measures      // set by Measure before Run, then read-only
}

// NewHub returns a hub over store and bus.
func NewHub(store api.Store, bus api.Bus, access Access, cfg HubConfig, log *slog.Logger) *Hub {
	return &Hub{
		store: store, bus: bus, access: access, cfg: cfg, log: log,
		records:  make(map[string]map[*Stream]int),
		events:   make(map[string]map[*Stream]int),
		prefixes: make(map[string]map[*Stream]int),
		colls:    make(map[string]map[*Stream]int),
		streams:  make(map[string]*Stream),
		pool:     newPool(cfg.Coalesce),
		wake:     make(chan struct{}, 1),
		first:    make(chan struct{}, 1),
		started:  make(chan struct{}),
		draining: make(chan struct{}),
		gone:     make(chan struct{}, 1),

		streamSlots: slots{total: cfg.MaxStreams, perUser: cfg.MaxStreamsPerUser},
		lookEach:    min(hangupInterval, max(cfg.MaxLifetime/10, 10*time.Millisecond)),
	}
}

// Run fans changes out until ctx ends. It starts at the end of the log.
func (h *Hub) Run(ctx context.Context) error {
	pos, _, err := h.store.Snapshot(ctx, nil)
	if err != nil {
		return err
	}
	h.pos.Store(pos)
	close(h.started)
	// A Bus that can call Wake on its own goroutine (it never blocks)
	// saves a hand-off between goroutines per commit, and one that says
	// which position it announces saves the catch-up (and its read of
	// the log) when Run has handed that out already.
	var stopChanges func()
	if b, ok := h.bus.(interface {
		SubscribeWake(topic string, wake func(head int64)) (cancel func())
	}); ok {
		stopChanges = b.SubscribeWake(api.TopicChanges, func(head int64) {
			if head == 0 || head > h.pos.Load() && !h.skip(head) {
				h.Wake()
			}
		})
	} else {
		stopChanges = h.bus.Subscribe(api.TopicChanges, func([]byte) { h.Wake() })
	}
	defer stopChanges()
	stopStreams := h.bus.Subscribe(TopicStreams, h.onStreamChange)
	defer stopStreams()
	// A change committed between the snapshot and the subscription was
	// announced to nobody here: one catch-up finds it.
	h.Wake()
	go h.runPool(ctx)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		case <-retry.C:
		}
		if err := h.catchUp(ctx); err != nil && ctx.Err() == nil {
			h.log.Error("read change log", "err", err)
			retry.Reset(250 * time.Millisecond)
		}
	}
}

// Wake tells Run that the log has new changes.
func (h *Hub) Wake() { signal(h.wake) }

// Drain ends every stream with its drain hint (end.go) and refuses new
// ones, so that clients resume on another instance, or on this one once
// it has restarted. It does not wait: whoever serves each stream writes
// the hint and ends it, Run when it sees the drain, and for a detached
// stream the writer pool, which this wakes. WaitStreams waits for them.
func (h *Hub) Drain() {
	h.drain.Do(func() {
		close(h.draining)
		// A stream detached after this list sees the drain when the pool
		// first serves it: Detach adds it to the list before scheduling it.
		h.pool.each(func(s *Stream) { s.notify() })
	})
}

// Draining reports whether Drain has been called.
func (h *Hub) Draining() bool {
	select {
	case <-h.draining:
		return true
	default:
		return false
	}
}

// WaitStreams waits until every stream has ended and its state is stored
// (so that it resumes from the store, here or elsewhere), or ctx ends:
// then it ends the streams left (their sockets close) and returns ctx's
// error. After Drain, the streams end as soon as their hint is written; a
// client that takes nothing keeps its stream until ctx ends.
func (h *Hub) WaitStreams(ctx context.Context) error {
	defer func() {
		select {
		case <-h.touching.idle():
		case <-ctx.Done():
		}
	}()
	for h.Stats.Streams.Load() > 0 {
		select {
		case <-h.gone:
		case <-ctx.Done():
			h.mu.RLock()
			left := make([]*Stream, 0, len(h.streams))
			for _, s := range h.streams {
				left = append(left, s)
			}
			h.mu.RUnlock()
			for _, s := range left {
				s.end(nil)
			}
			return ctx.Err()
		}
	}
	return nil
}

func (h *Hub) catchUp(ctx context.Context) error {
	for {
		changes, err := h.store.Changes(ctx, h.pos.Load(), catchUpBatch)
		if errors.Is(err, api.ErrTrimmed) {
			// Fell behind the retention window: start over at the head; every
			// stream resumes and gets a reset.
			h.log.Error("fan-out fell behind the retained change log; closing every stream")
			pos, _, err := h.store.Snapshot(ctx, nil)
			if err != nil {
				return err
			}
			h.mu.Lock()
			h.advance(pos)
			for _, s := range h.streams {
				s.end(errBehind)
			}
			h.mu.Unlock()
			continue
		}
		if err != nil {
			return err
		}
		for i := range changes {
			h.dispatch(&changes[i])
		}
		// A short answer reached the end of the log as the store knew it:
		// a later commit wakes Run again, so asking once more would only
		// cost every instance a query per commit.
		if len(changes) < catchUpBatch {
			return nil
		}
	}
}

// catchUpBatch is how many changes catchUp reads at a time.
const catchUpBatch = 1000

// dispatch hands one change to every stream that subscribes to it.
func (h *Hub) dispatch(ch *api.Change) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if ch.Seq <= h.pos.Load() { // skipped while nothing was subscribed
		return
	}
	h.gen++
	var d *delivery
	push := func(set map[*Stream]int) {
		for s := range set {
			if s.mark == h.gen {
				continue
			}
			s.mark = h.gen
			if d == nil {
				d = newDelivery(ch, h.cfg.BufferBytes)
			}
			if s.push(d) {
				h.ready = append(h.ready, s)
			}
		}
	}
	if ch.Kind == api.KindEvent {
		push(h.events[ch.Name])
		walkPrefixes(ch.Name, h.prefixes, push)
	} else {
		push(h.records[ch.Name])
		walkPrefixes(ch.Name, h.colls, push)
	}
	h.advance(ch.Seq)
	if h.measures.Lag != nil && !ch.Time.IsZero() {
		h.measures.Lag(time.Since(ch.Time))
	}
	if len(h.ready) > 0 {
		h.pool.schedule(h.ready...)
		clear(h.ready)
		h.ready = h.ready[:0]
	}
}

// skip moves the hub's position up to head, as if it had handed out every
// change up to it, when no stream subscribes to anything the log carries:
// Run would hand them to nobody, so it need not wake, nor read them. It
// reports whether it did. A stream registered or subscribing later starts
// from the new position, as it would have after Run handed them out, and
// dispatch drops a change that Run had read before. The Bus calls it on a
// goroutine that must not wait: while the index is locked, Run reads.
func (h *Hub) skip(head int64) bool {
	if !h.mu.TryRLock() {
		return false
	}
	defer h.mu.RUnlock()
	if len(h.records)+len(h.events)+len(h.prefixes)+len(h.colls) > 0 {
		return false
	}
	h.advance(head)
	return true
}

// advance moves pos up to p, never down; h.mu is locked (read-locked by
// Run's dispatch and by skip on the Bus's goroutine).
func (h *Hub) advance(p int64) {
	for {
		cur := h.pos.Load()
		if p <= cur || h.pos.CompareAndSwap(cur, p) {
			return
		}
	}
}

// walkPrefixes pushes to the streams indexed in m under each prefix of
// name: "" (every name), then each run of segments with its '/'. It costs
// one map lookup per segment of the name, whatever the number of
// subscriptions.
func walkPrefixes(name string, m map[string]map[*Stream]int, push func(map[*Stream]int)) {
	if len(m) == 0 {
		return
	}
	push(m[""])
	for i := strings.IndexByte(name, '/'); i >= 0; {
		push(m[name[:i+1]])
		j := strings.IndexByte(name[i+1:], '/')
		if j < 0 {
			break
		}
		i += j + 1
	}
}

// index adds (n=1) or removes (n=-1) a subscription of s.
func (h *Hub) index(s *Stream, x *sub, n int) {
	var m map[string]map[*Stream]int
	var key, kind string // kind: of an exact name, demand for listeners
	switch {
	case x.Presence != "" || x.Listen != "":
		h.Stats.Subscriptions.Add(int64(n))
		return // fed by their Feed, not by the log
	case x.coll != nil: // never demand for listeners (API.md)
		m, key = h.colls, x.coll.prefix
	case x.Record != "":
		m, key, kind = h.records, x.Record, api.ListenRecord
	case x.isPrefix:
		m, key = h.prefixes, x.pattern
	case x.Event != "":
		m, key, kind = h.events, x.pattern, api.ListenEvent
	default:
		return
	}
	set := m[key]
	if set == nil {
		set = make(map[*Stream]int)
		m[key] = set
	}
	before := len(set)
	if set[s] += n; set[s] <= 0 {
		delete(set, s)
		if len(set) == 0 {
			delete(m, key)
		}
	}
	if kind != "" {
		h.countDemand(kind, key, set, s, before)
	}
	h.Stats.Subscriptions.Add(int64(n))
}

// register indexes a stream's subscriptions and returns the log position
// from which its queue receives every change. The observer hears of the
// stream after.
func (h *Hub) register(s *Stream) int64 {
	s.opened()
	h.mu.Lock()
	h.streams[s.ID] = s
	h.revokedAtRegister(s)
	for _, x := range s.subs {
		h.index(s, x, 1)
	}
	if h.Stats.Streams.Add(1) == 1 {
		signal(h.first)
	}
	pos := h.pos.Load()
	h.mu.Unlock()
	h.observe(s, true)
	return pos
}

// FirstStream returns a channel that has a token once a stream opens
// while no other is open, since it was last taken: an instance that
// had its store's news gathered while it had no stream (server's
// follow) wants them at once again.
func (h *Hub) FirstStream() <-chan struct{} { return h.first }

// KeepOpen marks every open stream of this instance updated now in the
// store, so that a trim by age (which removes the streams not updated
// within the retention) never removes one that is open, however long it
// lives. A stream that ended meanwhile, or that the store no longer has,
// is skipped. Its touches go 16 at a time, so that the store's group
// commits take many together.
func (h *Hub) KeepOpen(ctx context.Context) {
	h.mu.RLock()
	ids := make([]string, 0, len(h.streams))
	for id := range h.streams {
		ids = append(ids, id)
	}
	h.mu.RUnlock()
	now := time.Now()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		first  error
	)
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := h.store.TouchStream(ctx, id, now); err != nil && !api.IsCode(err, api.CodeNotFound) {
				mu.Lock()
				if failed++; first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed > 0 && ctx.Err() == nil {
		h.log.Warn("keep open streams in the store", "failed", failed, "of", len(ids), "err", first)
	}
}

// unregister forgets an ended stream: its index entries, its side
// subscriptions' feeds, and then the observer hears of it.
func (h *Hub) unregister(s *Stream) {
	h.mu.Lock()
	if h.streams[s.ID] == s {
		delete(h.streams, s.ID)
	}
	for _, x := range s.subs {
		h.index(s, x, -1)
	}
	h.Stats.Streams.Add(-1)
	h.mu.Unlock()
	s.giveBack()
	s.unwatch(s.subs)
	h.observe(s, false)
	signal(h.gone)
	h.ended(s)
}

func (h *Hub) indexOne(s *Stream, x *sub, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index(s, x, n)
}

// streamChange is the Bus message that carries a subscription change.
type streamChange struct {
	Stream string           `json:"stream"`
	Add    bool             `json:"add"`
	Sub    api.Subscription `json:"sub"`
}

func (h *Hub) onStreamChange(payload []byte) {
	var c streamChange
	if payload == nil || json.Unmarshal(payload, &c) != nil {
		return
	}
	h.mu.RLock()
	s := h.streams[c.Stream]
	h.mu.RUnlock()
	if s != nil {
		s.control(c)
	}
}

// ChangeSubscription adds or removes a subscription of an open or resumable
// stream, on whichever instance holds it.
func (h *Hub) ChangeSubscription(ctx context.Context, user api.User, id string, x api.Subscription, add bool) error {
	if err := ValidateSubscription(x); err != nil {
		return err
	}
	if err := h.checkFeed(x); err != nil {
		return err
	}
	if !isStreamID(id) { // a store may not even take it
		return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	info, err := h.store.GetStream(ctx, id)
	if err != nil {
		return err
	}
	if info.User != user.ID {
		return api.Errorf(api.CodePermissionDenied, "only the user who opened stream %q may change it", id)
	}
	// The rules decide on the stream's instance, as for the subscriptions
	// a stream opens with: a refused one gets a denied frame there (a read
	// rule on the data needs the value its snapshot reads).
	// The store changes this one subscription, atomically: changes made
	// at the same time on any instance all take effect. The count read
	// above may be behind them, so concurrent adds can pass the limit by
	// a few.
	i := findSub(info.Subs, x)
	switch {
	case add && i < 0:
		if err := h.checkSubscriptions(len(info.Subs) + 1); err != nil {
			return err
		}
		head, _, err := h.store.Snapshot(ctx, nil)
		if err != nil {
			return err
		}
		err = h.store.AddStreamSub(ctx, id, api.StreamSub{Subscription: x, Since: head}, time.Now())
		if err != nil {
			return err
		}
	case !add && i >= 0:
		if err := h.store.RemoveStreamSub(ctx, id, x, time.Now()); err != nil {
			return err
		}
	default:
		return nil // already so
	}
	msg, _ := json.Marshal(streamChange{Stream: id, Add: add, Sub: x})
	return h.bus.Send(ctx, TopicStreams, msg)
}

// checkSubscriptions refuses a stream of n subscriptions past the limit.
// A resumed stream keeps what it has, even past a limit lowered since.
func (h *Hub) checkSubscriptions(n int) error {
	if limit := h.cfg.MaxSubscriptions; limit > 0 && n > limit {
		return LimitSubscriptions.Refuse(api.Errorf(api.CodeLimitExceeded, "a stream has at most %d subscriptions", limit))
	}
	return nil
}

func findSub(subs []api.StreamSub, x api.Subscription) int {
	for i, s := range subs {
		if s.Subscription == x {
			return i
		}
	}
	return -1
}

func newStreamID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// isStreamID reports whether id has the form of newStreamID's ids: 16
// characters of the lower-case base32 alphabet.
func isStreamID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// ParseToken splits a resume token "<stream id>-<position>".
func ParseToken(tok string) (id string, pos int64, ok bool) {
	i := strings.LastIndexByte(tok, '-')
	if i <= 0 || i == len(tok)-1 || len(tok) > 64 || !isStreamID(tok[:i]) {
		return "", 0, false
	}
	var n int64
	for _, c := range tok[i+1:] {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return "", 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return tok[:i], n, true
}

// inflight counts work under way, and tells when none is. Unlike a
// sync.WaitGroup, work may begin while someone waits for none: streams
// that WaitStreams gave up on still end, and touch, after it returns.
type inflight struct {
	mu    sync.Mutex
	n     int
	empty chan struct{} // closed once n is 0; nil: nobody waits
}

func (p *inflight) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
}

func (p *inflight) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n--; p.n == 0 && p.empty != nil {
		close(p.empty)
		p.empty = nil
	}
}

// idle returns a channel closed once no work is under way.
func (p *inflight) idle() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	if p.empty == nil {
		p.empty = make(chan struct{})
	}
	return p.empty
}
