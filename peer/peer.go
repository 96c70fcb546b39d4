// Package peer carries writes from the instance that takes them to the
// sequencer, the instance whose group commits take every instance's
// writes (PEER_URL, db/postgres's Sequencer).
//
// An instance keeps one link to the sequencer: an HTTP/1.1 connection
// upgraded (GET /peer/link, Upgrade: switchboard-peer/1, the lease's
// secret in X-Switchboard-Peer) to a stream of frames in both
// directions. A frame is a 4-byte big-endian length and a JSON message
// (encoding/json/v2's, which refuses a string that is not UTF-8 rather
// than change it): a Request from the instance, an Answer from the
// sequencer, matched by their ids. The frames of many writes share the
// link, and those queued while one is written go in the next system call
// (writer).
//
// The instance that takes a write authenticates it, limits its rate and
// reads its body; the sequencer only applies it, as the caller's user,
// and answers its changes or its error. So a forwarded write costs the
// sequencer its commit, not a second HTTP request, and the instance
// answers the client itself.
//
// A write is sent at most once. Whether it may have been applied when
// its answer does not come is what Forward tells: a request that was not
// written whole to the link (no link, a refused upgrade, a write that
// failed before its end) or that the sequencer refused (it is closing)
// cannot have been applied; one that was written whole may have been.
package peer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// Protocol is the Upgrade token of a link.
const Protocol = "switchboard-peer/1"

// Path is where an instance asks for a link.
const Path = "/peer/link"

// SecretHeader carries the lease's secret on the request for a link.
const SecretHeader = "X-Switchboard-Peer"

// MaxFrame bounds a frame's message. The largest answer is a single
// write's, with its record's value: at most 1 GiB (MAX_RECORD_BYTES), in
// base64. A request larger than this (MAX_BODY_BYTES has no bound) is
// served where it arrived.
const MaxFrame = 1536 << 20

// Request is a write that an instance forwards: a batch of record ops,
// or, when Event is set, an event to publish.
type Request struct {
	ID uint64 `json:"id"`
	// RequestID is the client request's X-Request-Id, for the
	// sequencer's log lines about it.
	RequestID string `json:"rid,omitzero"`
	User      User   `json:"user"`
	Ops       []Op   `json:"ops,omitzero"`
	Event     string `json:"event,omitzero"`
	Data      []byte `json:"data,omitzero"` // the event's payload, as the client sent it
}

// User is an api.User on the wire. Its claims and data came from a
// token, whose numbers JSON decodes as float64 on both ends.
type User struct {
	ID      string         `json:"id,omitzero"`
	Data    map[string]any `json:"data,omitzero"`
	Claims  map[string]any `json:"claims,omitzero"`
	Expires time.Time      `json:"exp,omitzero"`
	TokenID string         `json:"jti,omitzero"`
}

// Op is a realtime.Op on the wire: Data as the client sent it (a patch
// is checked where it is applied), Path as text.
type Op struct {
	Op          string   `json:"op"`
	Name        string   `json:"name"`
	Path        string   `json:"path,omitzero"`
	Data        []byte   `json:"data,omitzero"`
	ContentType string   `json:"ct,omitzero"`
	Cond        api.Cond `json:"cond,omitzero"`
}

// Answer is the sequencer's answer to a Request: its changes, or its error.
type Answer struct {
	ID      uint64   `json:"id"`
	Changes []Change `json:"changes,omitzero"`
	Error   *Error   `json:"error,omitzero"`
	// Refused says that the sequencer did not take the request (it is
	// closing): it was not applied.
	Refused bool `json:"refused,omitzero"`
}

// Change is an api.Change on the wire, with Created, which the log does
// not keep.
type Change struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      api.Kind  `json:"kind"`
	Name      string    `json:"name"`
	Version   int64     `json:"version,omitzero"`
	Data      []byte    `json:"data,omitzero"` // as stored: JSON would be rewritten (escapes, duplicate names)
	Publisher string    `json:"publisher,omitzero"`
	Created   bool      `json:"created,omitzero"`
}

// Error is an *api.Error on the wire, with the limit that refused the
// write, if one did (realtime.LimitOf). Fields stay as JSON, so that
// they answer the client as they were.
type Error struct {
	Code   api.Code                  `json:"code"`
	Detail string                    `json:"detail"`
	Fields map[string]jsontext.Value `json:"fields,omitzero"`
	Limit  string                    `json:"limit,omitzero"`
}

// NewRequest returns the request for a batch of ops by user.
func NewRequest(user api.User, ops []realtime.Op) *Request {
	req := &Request{User: userOf(user), Ops: make([]Op, len(ops))}
	for i, op := range ops {
		req.Ops[i] = Op{Op: op.Op, Name: op.Name, Path: op.Path.String(), Data: op.Data, ContentType: op.ContentType, Cond: op.Cond}
	}
	return req
}

// NewEvent returns the request to publish an event by user.
func NewEvent(user api.User, name string, payload []byte) *Request {
	return &Request{User: userOf(user), Event: name, Data: payload}
}

func userOf(u api.User) User {
	return User{ID: u.ID, Data: u.Data, Claims: u.Claims, Expires: u.Expires, TokenID: u.TokenID}
}

// Caller returns the request's user.
func (r *Request) Caller() api.User {
	u := r.User
	return api.User{ID: u.ID, Data: u.Data, Claims: u.Claims, Expires: u.Expires, TokenID: u.TokenID}
}

// RealtimeOps returns the request's ops, or an INVALID_PATH error for a
// path that the instance would not have sent.
func (r *Request) RealtimeOps() ([]realtime.Op, error) {
	ops := make([]realtime.Op, len(r.Ops))
	for i, op := range r.Ops {
		ops[i] = realtime.Op{Op: op.Op, Name: op.Name, Data: op.Data, ContentType: op.ContentType, Cond: op.Cond}
		if op.Path != "" {
			p, err := api.ParsePath(op.Path)
			if err != nil {
				return nil, err
			}
			ops[i].Path = p
		}
	}
	return ops, nil
}

// answerOf returns the answer of a request that returned changes or err.
func answerOf(id uint64, changes []api.Change, err error) *Answer {
	a := &Answer{ID: id}
	if err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			e = api.Internal(err, "the sequencer could not apply the write")
		}
		a.Error = &Error{Code: e.Code, Detail: e.Detail}
		for k, v := range e.Fields {
			b, err := jsonv2.Marshal(v)
			if err != nil {
				continue // a field the client would not get either
			}
			if a.Error.Fields == nil {
				a.Error.Fields = map[string]jsontext.Value{}
			}
			a.Error.Fields[k] = b
		}
		if l, ok := realtime.LimitOf(err); ok {
			a.Error.Limit = string(l)
		}
		return a
	}
	a.Changes = make([]Change, len(changes))
	for i, ch := range changes {
		a.Changes[i] = Change{Seq: ch.Seq, Time: ch.Time, Kind: ch.Kind, Name: ch.Name, Version: ch.Version,
			Data: ch.Data, Publisher: ch.Publisher, Created: ch.Created}
	}
	return a
}

// Result returns the answer's changes, or its error as an *api.Error.
func (a *Answer) Result() ([]api.Change, error) {
	if a.Error != nil {
		e := &api.Error{Code: a.Error.Code, Detail: a.Error.Detail}
		if len(a.Error.Fields) > 0 {
			e.Fields = make(map[string]any, len(a.Error.Fields))
			for k, v := range a.Error.Fields {
				e.Fields[k] = json.RawMessage(v)
			}
		}
		if a.Error.Limit != "" {
			e = realtime.Limit(a.Error.Limit).Refuse(e)
		}
		return nil, e
	}
	changes := make([]api.Change, len(a.Changes))
	for i, ch := range a.Changes {
		changes[i] = api.Change{Seq: ch.Seq, Time: ch.Time, Kind: ch.Kind, Name: ch.Name, Version: ch.Version,
			Data: json.RawMessage(ch.Data), Publisher: ch.Publisher, Created: ch.Created}
	}
	return changes, nil
}

// appendFrame appends v's frame to buf.
func appendFrame(buf []byte, v any) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	b, err := jsonv2.Marshal(v)
	if err != nil {
		return buf[:start], err
	}
	if len(b) > MaxFrame {
		return buf[:start], fmt.Errorf("a frame of %d bytes is more than %d", len(b), MaxFrame)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(len(b)))
	return append(buf, b...), nil
}

// mustFrame returns the frame of a message that always encodes.
func mustFrame(v any) []byte {
	b, err := appendFrame(nil, v)
	if err != nil {
		panic(err)
	}
	return b
}

// readFrame reads one frame's message from r into buf (grown as needed)
// and returns it.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("a frame of %d bytes is more than %d", n, MaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// decodeRequest and decodeAnswer decode a frame's message.
func decodeRequest(msg []byte) (*Request, error) {
	var r Request
	if err := jsonv2.Unmarshal(msg, &r); err != nil {
		return nil, fmt.Errorf("a request that is not one: %w", err)
	}
	return &r, nil
}

func decodeAnswer(msg []byte) (*Answer, error) {
	var a Answer
	if err := jsonv2.Unmarshal(msg, &a); err != nil {
		return nil, fmt.Errorf("an answer that is not one: %w", err)
	}
	return &a, nil
}

// Local applies forwarded requests with this instance's services, as the
// sequencer does.
func Local(records *realtime.Records, events *realtime.Events) Apply {
	return func(ctx context.Context, req *Request) ([]api.Change, error) {
		if req.Event != "" {
			ch, err := events.Publish(ctx, req.Caller(), req.Event, req.Data)
			if err != nil {
				return nil, err
			}
			return []api.Change{ch}, nil
		}
		ops, err := req.RealtimeOps()
		if err != nil {
			return nil, err
		}
		return records.Write(ctx, req.Caller(), ops)
	}
}
