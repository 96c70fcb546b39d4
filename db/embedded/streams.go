package embedded

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// Stream state. A stream is stored as parts: a header (user, start,
// updated) and one key per subscription (streamfile.go), so that adding
// or removing a subscription writes one small entry to the log and a few
// keys at the checkpoint, whatever the stream holds. Each change of a
// stream is a streamOp, and it goes the way of every change of this
// store: the commit loop checks it against the state as written (prepare)
// and appends it to the write-ahead log; once durable it is published to
// readers, who apply the ops since the last checkpoint to what the file
// holds (GetStream); the checkpoint applies them to the file; recovery
// reads them back from the log. One function, applyOp, says what an op
// does, to the file and to a reader's copy alike.

// streamOp is one change of a stream: its whole state (kind entryStream,
// from PutStream) or one of its parts. The kind is the log entry's type.
type streamOp struct {
	kind    byte
	id      string
	info    api.StreamInfo // entryStream: the whole state
	sub     api.StreamSub  // add, remove (its Subscription), since
	updated time.Time      // add, remove, touch
}

// opBody is the log's form of an op that is not a whole state (which is
// the api.StreamInfo's JSON, as logs have always held it).
type opBody struct {
	ID      string        `json:"id"`
	Sub     api.StreamSub `json:"sub"`
	Updated time.Time     `json:"updated"`
}

func isStreamEntry(typ byte) bool { return typ >= entryStream && typ <= entryStreamTouch }

func (op streamOp) encode() ([]byte, error) {
	if op.kind == entryStream {
		return json.Marshal(op.info)
	}
	return json.Marshal(opBody{ID: op.id, Sub: op.sub, Updated: op.updated})
}

func decodeStreamOp(typ byte, body []byte) (streamOp, error) {
	op := streamOp{kind: typ}
	if typ == entryStream {
		err := json.Unmarshal(body, &op.info)
		op.id = op.info.ID
		return op, err
	}
	var b opBody
	err := json.Unmarshal(body, &b)
	op.id, op.sub, op.updated = b.ID, b.Sub, b.Updated
	return op, err
}

// subValue is what a stream keeps of a subscription besides itself: its
// place (orders only grow: one added goes last) and its Since.
type subValue struct {
	order uint64
	since int64
}

// subStore holds the subscriptions of one stream: memSubs for a reader's
// copy, fileSubs in the bbolt file.
type subStore interface {
	get(x api.Subscription) (subValue, bool)
	set(x api.Subscription, v subValue) error
	remove(x api.Subscription) error
	clear() error
}

// applyOp applies op to a stream whose header is h (nil: the stream does
// not exist) and whose subscriptions subs holds, and returns the header
// after it. An op on a stream that does not exist does nothing: the commit
// loop refuses them, and removes streams only once their ops are
// checkpointed (see dropStreams).
func applyOp(h *streamHeader, subs subStore, op streamOp) (*streamHeader, error) {
	if op.kind == entryStream {
		return putOp(subs, op.info)
	}
	if h == nil {
		return nil, nil
	}
	x := op.sub.Subscription
	v, has := subs.get(x)
	var err error
	switch {
	case op.kind == entryStreamAdd && !has:
		err = subs.set(x, subValue{order: h.Next, since: op.sub.Since})
		h.Next++
	case op.kind == entryStreamRemove && has:
		err = subs.remove(x)
	case op.kind == entryStreamSince && has:
		v.since = op.sub.Since
		err = subs.set(x, v)
	}
	if op.kind != entryStreamSince {
		h.Updated = op.updated
	}
	return h, err
}

// putOp replaces a stream's state with info. A subscription listed twice
// is kept once, in its first place.
func putOp(subs subStore, info api.StreamInfo) (*streamHeader, error) {
	if err := subs.clear(); err != nil {
		return nil, err
	}
	h := &streamHeader{ID: info.ID, User: info.User, Start: info.Start, Updated: info.Updated}
	for _, x := range info.Subs {
		if _, dup := subs.get(x.Subscription); dup {
			continue
		}
		if err := subs.set(x.Subscription, subValue{order: h.Next, since: x.Since}); err != nil {
			return nil, err
		}
		h.Next++
	}
	return h, nil
}

// memSubs is a reader's copy of a stream's subscriptions.
type memSubs map[api.Subscription]subValue

func (m memSubs) get(x api.Subscription) (subValue, bool)  { v, ok := m[x]; return v, ok }
func (m memSubs) set(x api.Subscription, v subValue) error { m[x] = v; return nil }
func (m memSubs) remove(x api.Subscription) error          { delete(m, x); return nil }
func (m memSubs) clear() error                             { clear(m); return nil }

// list returns the subscriptions in their order.
func (m memSubs) list() []api.StreamSub {
	type placed struct {
		sub   api.StreamSub
		order uint64
	}
	all := make([]placed, 0, len(m))
	for x, v := range m {
		all = append(all, placed{api.StreamSub{Subscription: x, Since: v.since}, v.order})
	}
	slices.SortFunc(all, func(a, b placed) int { return cmp.Compare(a.order, b.order) })
	out := make([]api.StreamSub, len(all))
	for i, p := range all {
		out[i] = p.sub
	}
	return out
}

// GetStream returns a stored stream, or NOT_FOUND: the file's state with
// the ops published since the last checkpoint applied.
func (s *Store) GetStream(_ context.Context, id string) (api.StreamInfo, error) {
	var info api.StreamInfo
	err := s.read(func(tx *bolt.Tx) error {
		ops := s.view.streams[id]
		h, subs := (*streamHeader)(nil), memSubs{}
		if i := lastPut(ops); i >= 0 {
			ops = ops[i:] // a whole state: what came before does not matter
		} else {
			var err error
			if h, subs, err = readStream(tx, id); err != nil {
				return err
			}
		}
		for _, op := range ops {
			h, _ = applyOp(h, subs, op) // memSubs never fails
		}
		if h == nil {
			return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
		}
		info = api.StreamInfo{ID: id, User: h.User, Subs: subs.list(), Start: h.Start, Updated: h.Updated}
		return nil
	})
	return info, err
}

func lastPut(ops []streamOp) int {
	for i := len(ops) - 1; i >= 0; i-- {
		if ops[i].kind == entryStream {
			return i
		}
	}
	return -1
}

// PutStream stores a stream's whole state.
func (s *Store) PutStream(ctx context.Context, info api.StreamInfo) error {
	return s.changeStream(ctx, streamOp{kind: entryStream, id: info.ID, info: info})
}

// AddStreamSub adds a subscription to a stream, after the others.
func (s *Store) AddStreamSub(ctx context.Context, id string, sub api.StreamSub, updated time.Time) error {
	return s.changeStream(ctx, streamOp{kind: entryStreamAdd, id: id, sub: sub, updated: updated})
}

// RemoveStreamSub removes a subscription of a stream.
func (s *Store) RemoveStreamSub(ctx context.Context, id string, sub api.Subscription, updated time.Time) error {
	return s.changeStream(ctx, streamOp{kind: entryStreamRemove, id: id, sub: api.StreamSub{Subscription: sub}, updated: updated})
}

// SetStreamSince sets the Since of a subscription of a stream.
func (s *Store) SetStreamSince(ctx context.Context, id string, sub api.StreamSub) error {
	return s.changeStream(ctx, streamOp{kind: entryStreamSince, id: id, sub: sub})
}

// TouchStream sets when a stream was last updated.
func (s *Store) TouchStream(ctx context.Context, id string, updated time.Time) error {
	return s.changeStream(ctx, streamOp{kind: entryStreamTouch, id: id, updated: updated})
}

func (s *Store) changeStream(ctx context.Context, op streamOp) error {
	_, err := s.committer.Do(ctx, work{stream: &op})
	return err
}

// prepareStream checks a stream op against the state as written and
// encodes it into the log's group under way. Only the commit loop calls
// it; file opens the loop's read transaction of the bbolt file. The
// streams put since the last checkpoint exist; others exist when the file
// has them (streams leave the file only by the loop's dropStreams).
func (s *Store) prepareStream(op streamOp, head int64, file func() (*bolt.Tx, error)) error {
	if op.kind != entryStream && !s.written.streamsPut[op.id] {
		tx, err := file()
		if err != nil {
			return api.Internal(err, "read stream %s", op.id)
		}
		if tx.Bucket(bucketStreams).Get([]byte(op.id)) == nil {
			return api.Errorf(api.CodeNotFound, "stream %q does not exist", op.id)
		}
	}
	if err := s.wal.addStream(op, head); err != nil {
		return fmt.Errorf("stream %s: %w", op.id, err)
	}
	if op.kind == entryStream {
		s.written.streamsPut[op.id] = true
	}
	s.written.since++ // the checkpoint bounds the ops kept in memory too
	return nil
}
