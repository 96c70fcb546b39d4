package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// How the bbolt file keeps streams (see streams.go). The bucket streams
// maps a stream's id to its header (encodeHeader). The bucket streamsubs
// holds a key per subscription:
//
//	uvarint(len(id)) | id | the subscription (subKey)  ->  order uint64 | since int64
//
// The length makes each stream's keys a range of their own (no id's keys
// start with another's), so that reading a stream is one seek. Reading
// puts the subscriptions in order; an add or a removal is one key.
//
// Files written before subscriptions had keys of their own hold the whole
// api.StreamInfo in the header; Open moves them out, once (moveStreamSubs).
var bucketStreamSubs = []byte("streamsubs")

// streamHeader is what the bucket streams holds of a stream.
type streamHeader struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Start   int64     `json:"start,omitempty"`
	Updated time.Time `json:"updated"`
	Next    uint64    `json:"next"` // the order of the next subscription added
	// Subs are a stream's subscriptions in a file written before they had
	// keys of their own; Open moves them out.
	Subs []api.StreamSub `json:"subs,omitempty"`
}

// headerBinary starts a header in binary: then the user (its length, a
// uvarint, and its bytes), Start (a varint), Updated (varint seconds and
// uvarint nanoseconds since 1970) and Next (a uvarint). The id is the
// key. About 20 bytes, where JSON took about 130: a stream costs fewer
// pages, in the file, in its mapping, and in bbolt's pool of page
// buffers, which keeps those that a checkpoint wrote until the second
// garbage collection after it (10,000 new streams left 2.7 MB there with
// JSON, 1.7 MB now). Files written before hold JSON, which starts with
// '{', and is read as well; a header is rewritten in binary when its
// stream changes. A version from before cannot read these headers: see
// the README on going back to one.
const headerBinary = 1

func encodeHeader(h *streamHeader) []byte {
	b := make([]byte, 0, 1+len(h.User)+5*binary.MaxVarintLen64)
	b = append(b, headerBinary)
	b = binary.AppendUvarint(b, uint64(len(h.User)))
	b = append(b, h.User...)
	b = binary.AppendVarint(b, h.Start)
	b = binary.AppendVarint(b, h.Updated.Unix())
	b = binary.AppendUvarint(b, uint64(h.Updated.Nanosecond()))
	return binary.AppendUvarint(b, h.Next)
}

var errHeader = errors.New("corrupt stream header")

// decodeHeader reads the header v of the stream id, binary or JSON.
func decodeHeader(id string, v []byte) (*streamHeader, error) {
	if len(v) == 0 || v[0] != headerBinary {
		var h streamHeader
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, fmt.Errorf("stream %s: %w", id, err)
		}
		h.ID = id
		return &h, nil
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > uint64(len(v)-1-k) {
		return nil, fmt.Errorf("stream %s: %w", id, errHeader)
	}
	user := string(v[1+k : 1+k+int(n)])
	r := bytes.NewReader(v[1+k+int(n):])
	start, err1 := binary.ReadVarint(r)
	sec, err2 := binary.ReadVarint(r)
	nsec, err3 := binary.ReadUvarint(r)
	next, err4 := binary.ReadUvarint(r)
	if errors.Join(err1, err2, err3, err4) != nil || r.Len() != 0 || nsec >= 1e9 {
		return nil, fmt.Errorf("stream %s: %w", id, errHeader)
	}
	return &streamHeader{ID: id, User: user, Start: start, Updated: time.Unix(sec, int64(nsec)).UTC(), Next: next}, nil
}

func getHeader(tx *bolt.Tx, id string) (*streamHeader, error) {
	v := tx.Bucket(bucketStreams).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	return decodeHeader(id, v)
}

func putHeader(tx *bolt.Tx, h *streamHeader) error {
	return tx.Bucket(bucketStreams).Put([]byte(h.ID), encodeHeader(h))
}

// subPrefix is the start of the keys of a stream's subscriptions.
func subPrefix(id string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(id))), id...)
}

// subKey appends the canonical form of x to b: each field, in a fixed
// order, with its length.
func subKey(b []byte, x api.Subscription) []byte {
	for _, f := range [...]string{x.Record, x.Path, x.Event, x.Presence, x.Listen} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

var errSubKey = errors.New("corrupt subscription key")

func parseSubKey(b []byte) (api.Subscription, error) {
	var f [5]string
	for i := range f {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return api.Subscription{}, errSubKey
		}
		f[i], b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	if len(b) != 0 {
		return api.Subscription{}, errSubKey
	}
	return api.Subscription{Record: f[0], Path: f[1], Event: f[2], Presence: f[3], Listen: f[4]}, nil
}

// fileSubs is a stream's subscriptions in the file, in a writable
// transaction.
type fileSubs struct {
	b      *bolt.Bucket
	prefix []byte
}

func (f fileSubs) key(x api.Subscription) []byte {
	return subKey(bytes.Clone(f.prefix), x)
}

func (f fileSubs) get(x api.Subscription) (subValue, bool) {
	v := f.b.Get(f.key(x))
	if len(v) != 16 {
		return subValue{}, false
	}
	return subValue{order: binary.BigEndian.Uint64(v), since: int64(binary.BigEndian.Uint64(v[8:]))}, true
}

func (f fileSubs) set(x api.Subscription, v subValue) error {
	val := binary.BigEndian.AppendUint64(make([]byte, 0, 16), v.order)
	return f.b.Put(f.key(x), binary.BigEndian.AppendUint64(val, uint64(v.since)))
}

func (f fileSubs) remove(x api.Subscription) error { return f.b.Delete(f.key(x)) }

func (f fileSubs) clear() error {
	var keys [][]byte // deleting under a cursor can skip keys: collect first
	c := f.b.Cursor()
	for k, _ := c.Seek(f.prefix); k != nil && bytes.HasPrefix(k, f.prefix); k, _ = c.Next() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := f.b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// readStream reads a stream from the file: its header (nil when there is
// none) and a copy of its subscriptions.
func readStream(tx *bolt.Tx, id string) (*streamHeader, memSubs, error) {
	subs := memSubs{}
	h, err := getHeader(tx, id)
	if h == nil || err != nil {
		return nil, subs, err
	}
	prefix := subPrefix(id)
	c := tx.Bucket(bucketStreamSubs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		x, err := parseSubKey(k[len(prefix):])
		if err != nil || len(v) != 16 {
			return nil, nil, fmt.Errorf("stream %s: %w", id, errSubKey)
		}
		subs[x] = subValue{order: binary.BigEndian.Uint64(v), since: int64(binary.BigEndian.Uint64(v[8:]))}
	}
	return h, subs, nil
}

// applyStreamOps applies a stream's ops to the file, at a checkpoint.
// Applying them twice leaves what applying them once does, so that the
// retry of a checkpoint whose commit reached the disk after all (see
// appendLog) is harmless.
func applyStreamOps(tx *bolt.Tx, id string, ops []streamOp) error {
	h, err := getHeader(tx, id)
	if err != nil {
		return err
	}
	subs := fileSubs{b: tx.Bucket(bucketStreamSubs), prefix: subPrefix(id)}
	for _, op := range ops {
		if h, err = applyOp(h, subs, op); err != nil {
			return err
		}
	}
	if h == nil {
		return nil
	}
	return putHeader(tx, h)
}

// deleteStream removes a stream and its subscriptions from the file.
func deleteStream(tx *bolt.Tx, id string) error {
	subs := fileSubs{b: tx.Bucket(bucketStreamSubs), prefix: subPrefix(id)}
	if err := subs.clear(); err != nil {
		return err
	}
	return tx.Bucket(bucketStreams).Delete([]byte(id))
}

// moveStreamSubs gives the subscriptions of the streams in a file written
// before they had keys of their own (the header held them all) their keys.
// Open calls it once, when it creates the bucket streamsubs. A header it
// cannot read stays as it is (and Trim removes it).
func moveStreamSubs(tx *bolt.Tx) error {
	type stream struct{ id, v []byte }
	var all []stream // writing under ForEach is not allowed: collect first
	err := tx.Bucket(bucketStreams).ForEach(func(k, v []byte) error {
		all = append(all, stream{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	for _, st := range all {
		var info api.StreamInfo
		if err != nil || json.Unmarshal(st.v, &info) != nil {
			continue
		}
		info.ID = string(st.id)
		err = applyStreamOps(tx, info.ID, []streamOp{{kind: entryStream, id: info.ID, info: info}})
	}
	return err
}
