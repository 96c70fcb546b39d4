package realtime

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Sink is where a stream writes its frames: the SSE writer. Write and Flush
// are called by whoever serves the stream, one goroutine at a time; Abort
// may be called from any goroutine and makes a blocked or later write
// fail soon.
type Sink interface {
	Write(p []byte) (int, error)
	Flush() error
	Abort()
}

// Stream is one open SSE connection and its subscriptions. Whoever serves
// it (its own goroutine in Run, or the writer pool after Detach) owns the
// subscriptions and the sink; the hub only pushes to its queue, which is
// bounded: a stream that falls behind is cut. A stream ends once, through
// end (end.go).
type Stream struct {
	// What the hub's dispatch touches comes first, together: it visits
	// every subscribed stream for every change.
	mark uint64        // dispatch generation, owned by the hub's Run (dispatch)
	over atomic.Bool   // the end state: set once, by end (end.go), after reason
	slot atomic.Bool   // the stream holds its slot (slots.go): set by Open, cleared by giveBack
	q    queue         // the hub pushes, whoever serves the stream takes; its own lock, which also says whether a detached stream is held
	det  detached      // the writer pool's part (pool.go), used once Detach sets its conn
	wake chan struct{} // Run's wake-up, signalled by push and notify; made by Run (a detached stream has none)

	ID   string   // set by Open, then read-only
	User api.User // set by Open, then read-only

	hub *Hub

	// Owned by whoever serves the stream, with no lock: Run's goroutine,
	// or the caller of Detach and then the pool writer that holds the
	// stream (see detached).
	subs     []*sub
	*opening       // until the stream has started, then nil
	lastSeq  int64 // the last position delivered
	// For StreamEnd (measure.go): when it was registered and when its
	// lifetime ends (monoNow's clock; deadline 0: not yet set), what it
	// wrote (and frames, below).
	since      int64
	deadline   int64
	sentFrames int64
	sentBytes  int64
	// rulesGen is the hub's rulesGen its subscriptions were admitted
	// under, and decided its decisions on names that hold whatever the
	// data (streamperm.go).
	rulesGen uint64
	decided  map[decisionKey]verdict

	mu sync.Mutex
	// sink is written to by whoever serves the stream, with no lock. It is
	// set before the stream is registered; Run lets go of it (nil, under
	// mu) before it ends the stream itself, and end reads it under mu to
	// abort a write under way.
	sink Sink
	ctrl []streamChange // subscription changes waiting for whoever serves the stream; under mu

	endOnce sync.Once // end's: the first call decides
	frames  int32     // written since the last flush, by whoever serves the stream (here, where it fills endOnce's padding)
	reason  error     // why the stream ended (nil: a normal end); written by end before over, then read-only
}

// opening is the state of a stream's start (start.go), which an open
// stream does not keep: start lets it go.
type opening struct {
	denied []api.Subscription
	resume bool   // after is a position this stream has seen
	after  int64  // where to resume
	begin  int64  // the stored stream's Start
	reset  string // why a resume token could not be used
}

// epoch is the origin of monoNow.
var epoch = time.Now()

// monoNow returns the time on the monotonic clock, in nanoseconds since
// just before epoch (never 0): a time.Time's third of the size, for a
// stream's own clock.
func monoNow() int64 { return int64(time.Since(epoch)) + 1 }

// open is Open, once the stream has its slot (slots.go).
func (h *Hub) open(ctx context.Context, user api.User, subs []api.Subscription, token string) (*Stream, error) {
	// A subscription named twice is one, as adding one that a stream has
	// changes nothing (ChangeSubscription): one snapshot, one frame per
	// change.
	subs = distinct(subs)
	if err := h.checkSubscriptions(len(subs)); err != nil {
		return nil, err
	}
	if err := h.waitStarted(ctx); err != nil {
		return nil, err
	}
	s := &Stream{User: user, hub: h, q: queue{limit: h.cfg.BufferBytes}, opening: &opening{}}
	s.rulesGen = h.rulesGen.Load() // before any decision: a change of the rules after it is seen
	stored := make([]api.StreamSub, len(subs))
	for i, x := range subs {
		stored[i] = api.StreamSub{Subscription: x}
	}
	if token != "" {
		var err error
		if stored, err = s.resumeFrom(ctx, token, stored); err != nil {
			return nil, err
		}
	}
	if err := s.subscribe(ctx, stored); err != nil {
		return nil, err
	}
	if !s.resume {
		// A new stream's collections are counted before anything is
		// sent (a resumed one gets a denied frame instead: start).
		if err := s.checkCollections(ctx); err != nil {
			return nil, err
		}
	}
	if s.resume {
		// The stored subscriptions stay as they are: a change made from
		// elsewhere since they were read must not be written over (see
		// reconcile).
		if err := h.store.TouchStream(ctx, s.ID, time.Now()); err != nil {
			return nil, err
		}
		return s, nil
	}
	if s.ID == "" {
		// The stream's first position (that of its snapshots) is at or
		// after the hub's: whatever the hub has handed out is in the store.
		s.ID, s.begin = newStreamID(), h.pos.Load()
	}
	info := api.StreamInfo{ID: s.ID, User: user.ID, Subs: stored, Start: s.begin, Updated: time.Now()}
	if err := h.store.PutStream(ctx, info); err != nil {
		return nil, err
	}
	return s, nil
}

// distinct returns subs without the repeats of a subscription, in order:
// subs itself when it has none (a map only for many).
func distinct(subs []api.Subscription) []api.Subscription {
	var seen map[api.Subscription]bool
	if len(subs) > 16 {
		seen = make(map[api.Subscription]bool, len(subs))
	}
	var out []api.Subscription
	for i, x := range subs {
		repeat := seen[x] || seen == nil && slices.Contains(subs[:i], x)
		switch {
		case repeat && out == nil:
			out = append(make([]api.Subscription, 0, len(subs)), subs[:i]...)
		case !repeat && out != nil:
			out = append(out, x)
		}
		if seen != nil {
			seen[x] = true
		}
	}
	if out == nil {
		return subs
	}
	return out
}

// waitStarted waits until the hub has its start position, and refuses a
// stream while the hub drains. The hub hands out changes from its start
// position on: a stream that started below it (its snapshot or resume
// point taken earlier) would never get the changes in between.
func (h *Hub) waitStarted(ctx context.Context) error {
	return waitUntil(ctx, h.started, h.draining, api.Errorf(api.CodeUnavailable, "the server is shutting down; connect again"))
}

// resumeFrom looks up the stream that token names and returns the
// subscriptions to open. A stream that can be resumed gives s its id,
// position and start, and its stored subscriptions replace subs; any
// other token leaves subs, and s.reset says why.
func (s *Stream) resumeFrom(ctx context.Context, token string, subs []api.StreamSub) ([]api.StreamSub, error) {
	id, pos, ok := ParseToken(token)
	if !ok {
		s.reset = "the resume token is not one this server issued"
		return subs, nil
	}
	info, err := s.hub.store.GetStream(ctx, id)
	switch {
	case api.IsCode(err, api.CodeNotFound) || (err == nil && info.User != s.User.ID):
		s.reset = "the stream to resume is unknown or expired"
	case err != nil:
		return nil, err
	default:
		// A copy of the id: the token is a piece of a header or of the
		// query, which the stream would keep whole.
		s.ID, s.resume, s.after, s.begin = strings.Clone(id), true, pos, info.Start
		return info.Subs, nil
	}
	return subs, nil
}

// subscribe opens the stream's subscriptions; those that Access refuses
// become denied frames.
func (s *Stream) subscribe(ctx context.Context, subs []api.StreamSub) error {
	for _, x := range subs {
		y, err := newSub(x)
		if err != nil {
			return err
		}
		if err := s.hub.checkFeed(x.Subscription); err != nil {
			return err
		}
		if !s.admit(ctx, y) {
			s.denied = append(s.denied, x.Subscription)
			continue
		}
		s.subs = append(s.subs, y)
	}
	return nil
}

// Subscriptions returns the stream's subscriptions, as its ready frame lists them.
func (s *Stream) Subscriptions() []api.Subscription {
	out := make([]api.Subscription, len(s.subs))
	for i, x := range s.subs {
		out[i] = x.Subscription
	}
	return out
}

// Run writes the stream to sink until the client goes, the stream's
// lifetime ends, the hub drains, or the stream is cut, and returns why it
// ended: nil for a normal end, ErrSlow for a client that fell behind.
func (s *Stream) Run(ctx context.Context, sink Sink) error {
	h := s.hub
	s.wake = make(chan struct{}, 1)
	s.sink = &runSink{Sink: sink} // before register: the hub may end the stream as soon as it pushes
	h.register(s)
	defer h.unregister(s)
	defer s.touch(ctx)
	err := s.run(ctx)
	// Ending itself, Run writes no more: nothing to abort, and an aborted
	// sink would cut the response before net/http ends it cleanly.
	s.mu.Lock()
	s.sink = nil
	s.mu.Unlock()
	s.end(err)
	return s.err()
}

// run is Run's loop: the start, then whatever wakes the stream.
func (s *Stream) run(ctx context.Context) error {
	h := s.hub
	if err := s.start(ctx); err != nil {
		return err
	}
	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	lifetime := time.NewTimer(s.lifetime(0))
	defer lifetime.Stop()
	for {
		if err := s.flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.draining:
			return s.endDrained(ctx)
		case <-lifetime.C:
			return nil
		case <-heartbeat.C:
			if _, err := s.sink.Write([]byte(": ping\n\n")); err != nil {
				return err
			}
		case <-s.wake: // by a push, a subscription change, or the end
			if s.ended() {
				return s.reason
			}
			if err := s.applyControls(ctx); err != nil {
				return err
			}
			if err := s.drainQueue(ctx); err != nil {
				return err
			}
		}
	}
}

// write writes a frame, with an id line when seq > 0.
func (s *Stream) write(seq int64, frame []byte) error {
	if seq > 0 {
		if err := s.writeID(seq); err != nil {
			return err
		}
	}
	s.frames++
	s.sentBytes += int64(len(frame))
	_, err := s.sink.Write(frame)
	return err
}

// writeID writes the id line of the next frame: the stream's resume token
// "<stream id>-<position>". It is appended to the sink's own buffer: a
// stream keeps no scratch of its own.
func (s *Stream) writeID(seq int64) error {
	var n int
	switch w := s.sink.(type) {
	case *detached:
		n = len(w.out)
		w.out = appendID(w.out, s.ID, seq)
		n = len(w.out) - n
	case *runSink:
		w.id = appendID(w.id[:0], s.ID, seq)
		n = len(w.id)
		if _, err := w.Sink.Write(w.id); err != nil {
			return err
		}
	default: // set by the tests of this package
		b := appendID(nil, s.ID, seq)
		n = len(b)
		if _, err := s.sink.Write(b); err != nil {
			return err
		}
	}
	s.sentBytes += int64(n)
	return nil
}

// appendID appends the id line of a frame at seq of stream id to b.
func appendID(b []byte, id string, seq int64) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	b = append(b, '-')
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '\n')
}

// runSink is the sink of a stream served by Run, with the scratch of its
// id lines and the count of bytes gathered since its last flush.
type runSink struct {
	Sink
	id      []byte
	pending int
}

func (w *runSink) Write(p []byte) (int, error) {
	w.pending += len(p)
	return w.Sink.Write(p)
}

func (w *runSink) Flush() error {
	w.pending = 0
	return w.Sink.Flush()
}

// flush writes what the stream gathered. A detached stream that wrote its
// start, or nothing but a heartbeat since its last flush, lets go of its
// buffer once the socket took it all: an idle stream keeps none, and one
// that receives changes keeps the one it fills.
func (s *Stream) flush() error {
	s.hub.Stats.Frames.Add(int64(s.frames))
	s.sentFrames += int64(s.frames)
	idle := s.frames == 0
	s.frames = 0
	err := s.sink.Flush()
	if w := &s.det; s.pooled() && len(w.out) == 0 && (idle || w.blocking) {
		w.out = nil
	}
	return err
}

// deliver writes what a change means to this stream's subscriptions, at
// most once per position. d.frame is the shared encoding, or nil. Each
// subscription passes the rules (gate, streamperm.go): a refused change is
// not written, and a record subscription whose read rule now refuses gets
// a denied frame and ends. A frame too large for the stream's buffer is
// not written: the subscriptions it concerns are denied and end (see
// oversize.go). So is a path subscription's frame that would take the
// frames the change made for the stream past the buffer (many path
// subscriptions of one large value): a change makes at most about two
// buffers of frames for a stream.
func (s *Stream) deliver(ctx context.Context, d *delivery) error {
	ch, frame := d.change, d.frame
	if ch.Seq <= s.lastSeq {
		return nil
	}
	s.lastSeq = ch.Seq
	var denied, refused []*sub
	sent := false // the shared frame
	written := 0  // the bytes of this change's frames
	var memo int8 // the rules' decision on the change, once made
	for _, x := range s.subs {
		if !x.concerns(ch) {
			continue
		}
		switch send, end := s.gate(ctx, x, d, &memo); {
		case end:
			refused = append(refused, x)
			continue
		case !send:
			continue
		}
		if x.path != nil && ch.Kind == api.KindDelete {
			x.path.last = []byte("null") // and the delete frame, shared
		}
		var out []byte
		shared := false
		switch {
		case x.path != nil && ch.Kind != api.KindDelete:
			v := x.pathValue(ch.Data)
			if !x.changed(v) {
				continue
			}
			out = recordFrame(ch, &x.path.Path, v)
		case sent:
			continue
		default:
			if frame == nil {
				frame = changeFrame(ch)
			}
			out, shared = frame, true
		}
		// A path frame counts with those the change made before it; the
		// frame that whole records, collections and events share, alone.
		if !shared && s.tooLarge(written+len(out)) || shared && s.tooLarge(len(out)) {
			var err error
			if out, err = deniedFrame(x); err != nil {
				return err
			}
			denied = append(denied, x)
		} else {
			written += len(out)
			sent = sent || shared
		}
		if err := s.write(ch.Seq, out); err != nil {
			return err
		}
		if sent && ch.Kind == api.KindEvent {
			break // every event subscription shares the one frame
		}
	}
	for _, x := range refused {
		out, err := permDenied(x)
		if err != nil {
			return err
		}
		if err := s.write(ch.Seq, out); err != nil {
			return err
		}
	}
	return s.drop(ctx, append(denied, refused...))
}

// push queues a delivery; called by the hub's goroutine, it never blocks.
// A queue that overflows ends the stream (ErrSlow). push reports whether
// the stream is detached and must be put on the writer pool's ready list
// (the hub does that for many streams at once).
func (s *Stream) push(d *delivery) (schedule bool) {
	if s.ended() {
		s.hub.Stats.Dropped.Add(1)
		return false
	}
	ok, wake := s.q.push(d)
	if !ok {
		s.hub.Stats.Dropped.Add(1)
		s.end(ErrSlow)
		return false
	}
	if s.pooled() {
		return wake
	}
	signal(s.wake)
	return false
}

// pooled reports whether the stream is detached, served by the pool.
func (s *Stream) pooled() bool { return s.det.conn != nil }

// notify wakes whoever serves the stream, for work other than a delivery
// (a subscription change, a heartbeat, the end): its own goroutine (Run),
// or the writer pool for a detached stream, which is scheduled at most
// once.
func (s *Stream) notify() {
	if !s.pooled() {
		signal(s.wake)
		return
	}
	s.det.poke.Store(true) // before the claim: a holder that releases after looks at it
	if s.q.claim() {
		s.hub.pool.schedule(s)
	}
}

// drainQueue delivers everything queued, under the rules as they are now.
func (s *Stream) drainQueue(ctx context.Context) error {
	if err := s.checkRules(ctx); err != nil {
		return err
	}
	batch := s.q.take()
	for _, d := range batch {
		var err error
		if d.change == nil {
			err = s.deliverSide(d)
		} else {
			err = s.deliver(ctx, d)
		}
		if err != nil {
			return err
		}
		// The queue bounds the frames its changes share, not the path
		// frames each makes: a burst of those is written out past twice
		// the buffer, and a client that does not take it is cut.
		if err := s.spill(2 * s.hub.cfg.BufferBytes); err != nil {
			return err
		}
	}
	s.q.recycle(batch)
	return nil
}
