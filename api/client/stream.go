package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/r3labs/sse/v2"

	"github.com/switchboard-dev/switchboard/api"
)

// Subscription is one subscription of a stream: build it with RecordSub,
// PathSub, CollectionSub, EventSub, PresenceSub or ListenSub.
type Subscription struct {
	Record   string `json:"record,omitempty"`
	Path     string `json:"path,omitempty"`
	Event    string `json:"event,omitempty"`
	Presence string `json:"presence,omitempty"`
	Listen   string `json:"listen,omitempty"`
}

// RecordSub subscribes to the record name: a snapshot, then every change.
func RecordSub(name string) Subscription { return Subscription{Record: name} }

// PathSub subscribes to the value at path (a dot path or a JSON Pointer)
// of the record name: a snapshot, then a frame whenever it changes.
func PathSub(name, path string) Subscription { return Subscription{Record: name, Path: path} }

// CollectionSub subscribes to every record under prefix ("driver/" or
// "driver/*"; "" or "*" for every record): a snapshot of each, a synced
// frame, then every change, including records created later.
func CollectionSub(prefix string) Subscription { return Subscription{Record: wildcard(prefix)} }

// EventSub subscribes to events: a name, "PREFIX/*" or "*".
func EventSub(pattern string) Subscription { return Subscription{Event: pattern} }

// PresenceSub subscribes to the presence of one user, or of every user
// with "*".
func PresenceSub(user string) Subscription { return Subscription{Presence: user} }

// ListenSub makes the stream a data provider's: listen frames tell it
// when a name under prefix ("prices/" or "prices/*") gains its first
// subscriber and loses its last.
func ListenSub(prefix string) Subscription { return Subscription{Listen: wildcard(prefix)} }

func wildcard(prefix string) string {
	switch {
	case prefix == "" || prefix == "*" || strings.HasSuffix(prefix, "/*"):
		if prefix == "" {
			return "*"
		}
		return prefix
	case strings.HasSuffix(prefix, "/"):
		return prefix + "*"
	}
	return prefix + "/*"
}

// Frame is one frame of a stream. Event is the SSE event name: ready,
// snapshot, synced, record, delete, event, presence, listen, denied or
// reset. ID is the frame's own resume token ("" for most frames without
// one). Data is the frame's JSON; the As methods decode it.
type Frame struct {
	Event string
	ID    string
	Data  json.RawMessage
}

// Decode decodes the frame's data into v.
func (f Frame) Decode(v any) error { return json.Unmarshal(f.Data, v) }

// RecordFrame is a snapshot, record or delete frame.
type RecordFrame struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"` // 0 in the snapshot of a record that does not exist
	Path    string          `json:"path,omitempty"`
	Data    json.RawMessage `json:"data"` // the value of the subscribed scope; null after a delete
	// Op is "snapshot", "set", "patch" or "delete".
	Op string `json:"op"`
}

// Decode decodes the record's data into v.
func (r RecordFrame) Decode(v any) error { return json.Unmarshal(r.Data, v) }

// AsRecord decodes a snapshot, record or delete frame.
func (f Frame) AsRecord() (RecordFrame, error) {
	var r RecordFrame
	switch f.Event {
	case "snapshot", "record", "delete":
	default:
		return r, fmt.Errorf("client: a %s frame is no record frame", f.Event)
	}
	if err := f.Decode(&r); err != nil {
		return r, err
	}
	switch f.Event {
	case "snapshot":
		r.Op = "snapshot"
	case "delete":
		r.Op, r.Data = "delete", json.RawMessage("null")
	}
	return r, nil
}

// EventFrame is an event frame.
type EventFrame struct {
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data"`
	Publisher *string         `json:"publisher"` // the user who emitted it; nil if anonymous
	ID        string          `json:"id"`        // the id its emitter got (see Emit)
}

// Decode decodes the event's data into v.
func (e EventFrame) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// AsEvent decodes an event frame.
func (f Frame) AsEvent() (EventFrame, error) {
	var e EventFrame
	return e, f.as("event", &e)
}

// PresenceFrame says that a user is online or went offline.
type PresenceFrame struct {
	User   string `json:"user"`
	Online bool   `json:"online"`
}

// AsPresence decodes a presence frame.
func (f Frame) AsPresence() (PresenceFrame, error) {
	var p PresenceFrame
	return p, f.as("presence", &p)
}

// ListenFrame says that demand for a name under a listened prefix started
// (Active) or stopped.
type ListenFrame struct {
	Kind   string `json:"kind"` // "record" or "event"
	Name   string `json:"name"`
	Active bool   `json:"active"`
}

// AsListen decodes a listen frame.
func (f Frame) AsListen() (ListenFrame, error) {
	var l ListenFrame
	return l, f.as("listen", &l)
}

// DeniedFrame says that a subscription was refused or ended.
type DeniedFrame struct {
	Subscription Subscription `json:"subscription"`
	Code         api.Code     `json:"code"` // PERMISSION_DENIED or PAYLOAD_TOO_LARGE
}

// AsDenied decodes a denied frame.
func (f Frame) AsDenied() (DeniedFrame, error) {
	var d DeniedFrame
	return d, f.as("denied", &d)
}

// SyncedFrame says that a collection's snapshots are complete.
type SyncedFrame struct {
	Record string `json:"record"`
	Count  int    `json:"count"`
}

// AsSynced decodes a synced frame.
func (f Frame) AsSynced() (SyncedFrame, error) {
	var s SyncedFrame
	return s, f.as("synced", &s)
}

// ReadyFrame starts every connection of a stream.
type ReadyFrame struct {
	Stream        string         `json:"stream"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// AsReady decodes a ready frame.
func (f Frame) AsReady() (ReadyFrame, error) {
	var r ReadyFrame
	return r, f.as("ready", &r)
}

func (f Frame) as(event string, v any) error {
	if f.Event != event {
		return fmt.Errorf("client: a %s frame is no %s frame", f.Event, event)
	}
	return f.Decode(v)
}

// maxFrame bounds one frame; r3labs/sse's default, 64 KiB, is below a
// large record's.
const maxFrame = 32 << 20

// Stream is an open stream of the server: one connection multiplexing its
// subscriptions, which Add and Remove change. It reconnects by itself
// when the server closes the connection (a deploy, the stream's maximum
// lifetime, its token's expiry), answers 5xx or 429 (a proxy while the
// server restarts, a drain) or cannot be reached: after the server's
// retry: or a backoff with jitter, always resuming from the last frame's
// id (Last-Event-ID), so that the server replays every frame missed in
// between. No frame is delivered twice: a change or snapshot of a record
// version already delivered for the same record (and path), or an event
// already delivered, is dropped; after a reset frame (the resume point
// was too old) fresh snapshots follow and are delivered. A 401 gets a new
// token from the client's refresher (WithTokenRefresher) when it has one.
//
// Every ready frame is delivered (the first, and one per reconnection).
type Stream struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	frames chan Frame
	done   chan struct{}
	exited chan struct{} // closed after frames
	err    error         // why the stream ended; read after done

	mu     sync.Mutex
	subs   []Subscription // the subscriptions wanted
	id     string         // the stream's id, from its ready frame
	lastID string         // the last frame's id: the resume point

	versions map[string]int64 // name "\x00" path: the last version delivered

	// Read and written by the run goroutine only.
	retry    time.Duration       // the server's retry:
	connLast string              // the id r3labs/sse gives a frame without one
	events   map[string]struct{} // the ids of the events delivered lately
	evOrder  []string
	started  chan error // the first ready frame (and its subscriptions) or a refusal
}

// maxEventIDs bounds the event ids kept to drop a replayed event.
const maxEventIDs = 10000

// Stream opens a stream of subs and returns once the server has accepted
// it (its first ready frame, and the subscriptions that a URL cannot
// carry, path subscriptions, added). A refusal (400 for a bad name, 401,
// 403, 413...) is an *Error; an unreachable server is tried again until
// ctx ends. The stream lasts until ctx ends or Close; its frames come on
// Frames. The client's HTTP client must have no Timeout.
func (c *Client) Stream(ctx context.Context, subs ...Subscription) (*Stream, error) {
	return c.ResumeStream(ctx, "", subs...)
}

// ResumeStream is Stream from the resume point lastID (a frame's ID, or
// LastID of an earlier stream): the server replays what came after it, on
// the stream that lastID names, with that stream's subscriptions (subs
// are added to them).
func (c *Client) ResumeStream(parent context.Context, lastID string, subs ...Subscription) (*Stream, error) {
	ctx, cancel := context.WithCancel(parent)
	s := &Stream{
		c: c, ctx: ctx, cancel: cancel,
		frames: make(chan Frame, 1024), done: make(chan struct{}), exited: make(chan struct{}),
		lastID: lastID, versions: map[string]int64{}, events: map[string]struct{}{},
		started: make(chan error, 1),
	}
	for _, x := range subs {
		if !slices.Contains(s.subs, x) {
			s.subs = append(s.subs, x)
		}
	}
	go s.run()
	select {
	case err := <-s.started:
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	case <-s.done:
		return nil, s.Err()
	case <-parent.Done(): // not ctx: the stream cancels that one when it ends
		s.Close()
		return nil, parent.Err()
	}
}

// Frames returns the stream's frames. It is closed when the stream ends.
// Frames wait for the reader: a reader that does not keep up is
// disconnected by the server past its buffer, and the stream resumes
// without loss.
func (s *Stream) Frames() <-chan Frame { return s.frames }

// ID returns the stream's id (from its last ready frame).
func (s *Stream) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// LastID returns the id of the last frame that carried one: a later
// ResumeStream from it misses nothing.
func (s *Stream) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// Subscriptions returns the stream's subscriptions.
func (s *Stream) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subs)
}

// Close ends the stream and waits until Frames is closed.
func (s *Stream) Close() error {
	s.cancel()
	<-s.exited
	return nil
}

// Err returns why the stream ended: nil while it runs and after Close or
// the end of its context, else the server's refusal to resume it.
func (s *Stream) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Add adds subscriptions to the open stream (POST
// /stream/{id}/subscriptions); their snapshots follow on Frames. A
// subscription the server refuses is not added, and its error returned.
// While the stream reconnects they are added on the new connection.
func (s *Stream) Add(ctx context.Context, subs ...Subscription) error {
	for _, x := range subs {
		s.mu.Lock()
		had := slices.Contains(s.subs, x)
		if !had {
			s.subs = append(s.subs, x)
		}
		id := s.id
		s.mu.Unlock()
		if err := s.change(ctx, id, x, true); err != nil {
			if !had {
				s.forget(x)
			}
			return err
		}
	}
	return nil
}

// Remove removes subscriptions from the open stream (DELETE
// /stream/{id}/subscriptions).
func (s *Stream) Remove(ctx context.Context, subs ...Subscription) error {
	for _, x := range subs {
		s.forget(x)
		s.mu.Lock()
		id := s.id
		s.mu.Unlock()
		if err := s.change(ctx, id, x, false); err != nil {
			return err
		}
	}
	return nil
}

// forget drops x from the subscriptions wanted, and the versions seen of
// its records: subscribed again, they get their snapshot again.
func (s *Stream) forget(x Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = slices.DeleteFunc(s.subs, func(y Subscription) bool { return y == x })
	if x.Record == "" {
		return
	}
	if w := x.Record; w == "*" || strings.HasSuffix(w, "/*") {
		prefix := strings.TrimSuffix(w, "*")
		for k := range s.versions {
			if strings.HasPrefix(k, prefix) && strings.HasSuffix(k, "\x00") {
				delete(s.versions, k)
			}
		}
		return
	}
	delete(s.versions, x.Record+"\x00"+x.Path)
}

// change posts or deletes one subscription of the stream id. A server
// that cannot be reached, or has forgotten the stream, is no error: the
// next connection's ready frame brings the subscriptions up to date.
func (s *Stream) change(ctx context.Context, id string, x Subscription, add bool) error {
	method := http.MethodDelete
	if add {
		method = http.MethodPost
	}
	if id == "" {
		return nil
	}
	resp, err := s.c.do(ctx, method, "/stream/"+url.PathEscape(id)+"/subscriptions", nil, x)
	if err == nil {
		resp.Body.Close()
		return nil
	}
	var e *Error
	if errors.As(err, &e) && (e.Status >= 500 || e.Status == http.StatusNotFound || e.Status == http.StatusTooManyRequests) ||
		!errors.As(err, &e) && ctx.Err() == nil {
		return nil
	}
	return err
}

// run connects again and again until the stream ends.
func (s *Stream) run() {
	defer close(s.exited)
	defer close(s.frames) // after done: a reader that sees the end sees Err
	defer close(s.done)
	defer s.cancel()
	b := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 5 * time.Second}
	b.Reset()
	if s.c.autoRefresh > 0 {
		go s.refreshLoop()
	}
	first, renewed := true, false
	for {
		ready, after, err := s.connect(&first)
		if s.ctx.Err() != nil {
			return
		}
		if ready {
			b.Reset()
			renewed = false
		}
		wait := b.NextBackOff()
		switch {
		case err == nil && ready && s.retry > 0: // the server ended the stream: come back as it says
			wait = s.retry
		case err == nil:
		case status(err) == http.StatusUnauthorized:
			if renewed { // the new token was refused too
				s.end(err, nil)
				return
			}
			ok, rerr := s.c.renewAfter401(s.ctx)
			if rerr != nil || !ok {
				s.end(err, rerr)
				return
			}
			wait, renewed = 0, true
		case permanent(err):
			s.end(err, nil)
			return
		}
		if after > 0 { // the server's Retry-After, spread
			wait = max(wait, after+rand.N(after/4+1))
		}
		if !sleep(s.ctx, wait) {
			return
		}
	}
}

// refreshLoop refreshes the client's token before it expires, while the
// stream runs: the server ends the stream at the old token's expiry, and
// it resumes with the new one.
func (s *Stream) refreshLoop() {
	for {
		wait := time.Minute
		if exp := s.c.tokenExpiry(); !exp.IsZero() {
			wait = max(time.Until(exp)-s.c.autoRefresh, 50*time.Millisecond)
		}
		if !sleep(s.ctx, wait) {
			return
		}
		if err := s.c.refreshIfDue(s.ctx); err != nil && !sleep(s.ctx, time.Second) {
			return
		}
	}
}

// end ends the stream with err (or rerr, the refresher's).
func (s *Stream) end(err, rerr error) {
	if rerr != nil {
		err = rerr
	}
	s.err = err
	select {
	case s.started <- err:
	default:
	}
}

// once makes r3labs/sse's client try a connection once: the Stream
// reconnects by itself (the library returns nil when the server closes
// the stream, and its default backoff gives up after 15 minutes).
type once struct{}

func (once) NextBackOff() time.Duration { return -1 } // backoff.Stop
func (once) Reset()                     {}

// connect runs one connection, and reports whether it got its ready frame,
// and the Retry-After of a refusal. It returns nil when the server closed
// the stream.
func (s *Stream) connect(first *bool) (bool, time.Duration, error) {
	q := url.Values{}
	s.mu.Lock()
	for _, x := range s.subs {
		switch {
		case x.Path != "": // only POST carries a path
		case x.Record != "":
			q.Add("record", x.Record)
		case x.Event != "":
			q.Add("event", x.Event)
		case x.Presence != "":
			q.Add("presence", x.Presence)
		case x.Listen != "":
			q.Add("listen", x.Listen)
		}
	}
	last := s.lastID
	s.mu.Unlock()
	u := strings.TrimSuffix(s.c.BaseURL, "/") + "/stream"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	sc := sse.NewClient(u, sse.ClientMaxBufferSize(maxFrame))
	if s.c.HTTP != nil {
		sc.Connection = s.c.HTTP
	}
	sc.ReconnectStrategy = once{}
	if tok := s.c.token(s.ctx); tok != "" {
		sc.Headers["Authorization"] = "Bearer " + tok
	}
	if last != "" {
		sc.Headers["Last-Event-ID"] = last
	}
	var after time.Duration
	sc.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		defer resp.Body.Close()
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			after = min(time.Duration(secs)*time.Second, time.Minute)
		}
		return problem(resp)
	}
	s.connLast = ""
	ready := false
	err := sc.SubscribeRawWithContext(s.ctx, func(ev *sse.Event) {
		if s.handle(ev, first) {
			ready = true
		}
	})
	return ready, after, err
}

// handle takes one frame of the connection, and reports whether it was
// its ready frame.
func (s *Stream) handle(ev *sse.Event, first *bool) bool {
	// r3labs/sse gives a frame without an id the last id seen: only a new
	// one is the frame's own.
	id := string(ev.ID)
	own := ""
	if id != "" && id != s.connLast {
		own, s.connLast = id, id
		s.mu.Lock()
		s.lastID = id
		s.mu.Unlock()
	}
	if len(ev.Retry) > 0 {
		if ms, err := strconv.Atoi(string(ev.Retry)); err == nil && ms >= 0 {
			s.retry = time.Duration(ms) * time.Millisecond
		}
	}
	if len(ev.Event) == 0 && len(ev.Data) == 0 {
		return false
	}
	f := Frame{Event: string(ev.Event), ID: own, Data: json.RawMessage(bytes.Clone(ev.Data))}
	if f.Event == "" {
		f.Event = "message"
	}
	isReady := false
	switch f.Event {
	case "ready":
		r, err := f.AsReady()
		if err != nil {
			return false
		}
		isReady = true
		s.mu.Lock()
		s.id = r.Stream
		if *first { // a resumed stream keeps what it had
			for _, x := range r.Subscriptions {
				if !slices.Contains(s.subs, x) {
					s.subs = append(s.subs, x)
				}
			}
		}
		s.mu.Unlock()
		if *first {
			*first = false
			// The subscriptions a URL cannot carry go now, before Stream
			// returns, so that their refusal is its error.
			err := s.reconcile(r)
			s.started <- err
			if err != nil {
				s.cancel()
				return true
			}
		} else {
			go s.reconcile(r)
		}
	case "denied":
		if d, err := f.AsDenied(); err == nil {
			s.forget(d.Subscription)
		}
	case "reset":
		s.mu.Lock()
		clear(s.versions) // fresh snapshots follow
		s.mu.Unlock()
		clear(s.events)
		s.evOrder = s.evOrder[:0]
	case "snapshot", "record", "delete":
		var r RecordFrame
		if err := f.Decode(&r); err == nil {
			key := r.Name + "\x00" + r.Path
			s.mu.Lock()
			v, seen := s.versions[key]
			if !seen || r.Version > v {
				s.versions[key] = r.Version
			}
			s.mu.Unlock()
			if seen && r.Version <= v {
				return false
			}
		}
	case "event":
		var e EventFrame
		if err := f.Decode(&e); err == nil && e.ID != "" {
			if _, seen := s.events[e.ID]; seen {
				return false
			}
			s.events[e.ID] = struct{}{}
			s.evOrder = append(s.evOrder, e.ID)
			if len(s.evOrder) > maxEventIDs {
				delete(s.events, s.evOrder[0])
				s.evOrder = s.evOrder[1:]
			}
		}
	}
	select {
	case s.frames <- f:
	case <-s.ctx.Done():
	}
	return isReady
}

// reconcile brings the server's subscriptions of the stream (those of its
// ready frame) to the ones wanted: a resumed stream keeps the server's,
// and a fresh one (its resume point unknown) has only those of its URL.
func (s *Stream) reconcile(r ReadyFrame) error {
	s.mu.Lock()
	want := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, x := range r.Subscriptions {
		if !slices.Contains(want, x) {
			if err := s.change(s.ctx, r.Stream, x, false); err != nil {
				return err
			}
		}
	}
	for _, x := range want {
		if !slices.Contains(r.Subscriptions, x) {
			if err := s.change(s.ctx, r.Stream, x, true); err != nil {
				s.forget(x)
				return err
			}
		}
	}
	return nil
}

// Handlers are typed callbacks for Stream.Handle; a nil one skips its
// frames.
type Handlers struct {
	Ready    func(ReadyFrame)    // every connection's first frame
	Record   func(RecordFrame)   // snapshot, record and delete frames (see Op)
	Synced   func(SyncedFrame)   // a collection's snapshots are complete
	Event    func(EventFrame)    // an event
	Presence func(PresenceFrame) // a user came online or went offline
	Listen   func(ListenFrame)   // demand for a name started or stopped
	Denied   func(DeniedFrame)   // a subscription was refused or ended
	Reset    func(reason string) // the resume point was too old: fresh snapshots follow
}

// Handle calls h's callbacks for the stream's frames, one after the other,
// until the stream ends, and returns Err. It reads Frames: use one or the
// other.
func (s *Stream) Handle(h Handlers) error {
	for f := range s.frames {
		if s.ctx.Err() != nil {
			break // closed: the frames still buffered are not wanted
		}
		switch f.Event {
		case "ready":
			if r, err := f.AsReady(); err == nil && h.Ready != nil {
				h.Ready(r)
			}
		case "snapshot", "record", "delete":
			if r, err := f.AsRecord(); err == nil && h.Record != nil {
				h.Record(r)
			}
		case "synced":
			if r, err := f.AsSynced(); err == nil && h.Synced != nil {
				h.Synced(r)
			}
		case "event":
			if r, err := f.AsEvent(); err == nil && h.Event != nil {
				h.Event(r)
			}
		case "presence":
			if r, err := f.AsPresence(); err == nil && h.Presence != nil {
				h.Presence(r)
			}
		case "listen":
			if r, err := f.AsListen(); err == nil && h.Listen != nil {
				h.Listen(r)
			}
		case "denied":
			if r, err := f.AsDenied(); err == nil && h.Denied != nil {
				h.Denied(r)
			}
		case "reset":
			var r struct {
				Reason string `json:"reason"`
			}
			if f.Decode(&r) == nil && h.Reset != nil {
				h.Reset(r.Reason)
			}
		}
	}
	return s.Err()
}
