// Package embedded is the single-file store: records, the change log and
// stream state in one bbolt file, for one process. Writes are group
// committed: every write waiting when a transaction starts joins it, so
// under load many writes share one fsync.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

var _ api.Store = (*Store)(nil)

var (
	bucketRecords = []byte("records")
	bucketLog     = []byte("log")
	bucketStreams = []byte("streams")
	bucketMeta    = []byte("meta")
	keyTrimmed    = []byte("trimmed")
)

// maxGroup bounds how many waiting requests join one transaction.
const maxGroup = 512

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("embedded store is closed")

// Store is the embedded api.Store. It is safe for concurrent use; only one
// process may open a file at a time.
type Store struct {
	mu        sync.RWMutex // held to queue a request; Close takes it to stop queueing
	closed    bool
	db        *bolt.DB
	bus       *Bus
	reqs      chan *request
	quit      chan struct{}
	done      chan struct{}
	head      int64 // owned by the commit loop
	lastGroup int   // how many requests the last commit held; owned by the commit loop
}

// request is one caller's atomic unit of work for the commit loop.
type request struct {
	writes  []api.Write
	stream  *api.StreamInfo
	changes []api.Change
	err     error
	done    chan struct{}
}

// Open opens (or creates) the store in dir, in the file switchboard.db.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	file := filepath.Join(dir, "switchboard.db")
	db, err := bolt.Open(file, 0o600, &bolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // address space only: no remapping (which waits for readers) as the file grows
	})
	if err != nil {
		return nil, fmt.Errorf("open %s (is another server using it?): %w", file, err)
	}
	s := &Store{db: db, bus: NewBus(), reqs: make(chan *request, maxGroup),
		quit: make(chan struct{}), done: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketLog, bucketStreams, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		s.head = headOf(tx)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", file, err)
	}
	go s.loop()
	return s, nil
}

// Bus returns the in-process Bus on which the store announces changes.
func (s *Store) Bus() *Bus { return s.bus }

// Close stops the commit loop, after the transaction under way, and
// closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	return s.db.Close()
}

// Ping reports whether the file is open.
func (s *Store) Ping(context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Get returns a record, or NOT_FOUND.
func (s *Store) Get(_ context.Context, name string) (api.Record, error) {
	var rec api.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		rec, ok = getRecord(tx, name)
		if !ok {
			return api.NotFound(name)
		}
		return nil
	})
	return rec, err
}

// List returns records under prefix after the cursor, in name order.
func (s *Store) List(_ context.Context, prefix, after string, limit int) ([]api.Record, error) {
	var out []api.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		start := prefix
		if after > start {
			start = after
		}
		for k, v := c.Seek([]byte(start)); k != nil && len(out) < limit; k, v = c.Next() {
			name := string(k)
			if !strings.HasPrefix(name, prefix) {
				break
			}
			if name <= after {
				continue
			}
			out = append(out, api.Record{Name: name, Version: int64(binary.BigEndian.Uint64(v))})
		}
		return nil
	})
	return out, err
}

// Snapshot reads records at one log position.
func (s *Store) Snapshot(_ context.Context, names []string) (int64, []api.Record, error) {
	var pos int64
	out := make([]api.Record, len(names))
	err := s.db.View(func(tx *bolt.Tx) error {
		pos = headOf(tx)
		for i, n := range names {
			out[i], _ = getRecord(tx, n)
			out[i].Name = n
		}
		return nil
	})
	return pos, out, err
}

// Changes returns up to limit changes after position after.
func (s *Store) Changes(_ context.Context, after int64, limit int) ([]api.Change, error) {
	var out []api.Change
	err := s.db.View(func(tx *bolt.Tx) error {
		if after < getInt(tx.Bucket(bucketMeta), keyTrimmed) {
			return api.ErrTrimmed
		}
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

// Trim removes changes and streams older than before, a thousand changes
// per transaction so that writers never wait long.
func (s *Store) Trim(ctx context.Context, before time.Time) error {
	cut := before.UnixNano()
	for more := true; more; {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			log := tx.Bucket(bucketLog)
			var old [][]byte // deleting under a cursor can skip keys: collect first
			c := log.Cursor()
			for k, v := c.First(); k != nil && len(old) < 1000; k, v = c.Next() {
				if int64(binary.BigEndian.Uint64(v)) >= cut {
					break
				}
				old = append(old, k)
			}
			more = len(old) == 1000
			if len(old) == 0 {
				return nil
			}
			for _, k := range old {
				if err := log.Delete(k); err != nil {
					return err
				}
			}
			return putInt(tx.Bucket(bucketMeta), keyTrimmed, int64(binary.BigEndian.Uint64(old[len(old)-1])))
		})
		if err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var info api.StreamInfo
			if json.Unmarshal(v, &info) != nil || info.Updated.Before(before) {
				old = append(old, k)
			}
			return nil
		})
		for _, k := range old {
			if err == nil {
				err = b.Delete(k)
			}
		}
		return err
	})
}

// GetStream returns a stored stream, or NOT_FOUND.
func (s *Store) GetStream(_ context.Context, id string) (api.StreamInfo, error) {
	var info api.StreamInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketStreams).Get([]byte(id))
		if v == nil {
			return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
		}
		return json.Unmarshal(v, &info)
	})
	return info, err
}

// PutStream stores a stream's state.
func (s *Store) PutStream(ctx context.Context, info api.StreamInfo) error {
	_, err := s.submit(ctx, &request{stream: &info})
	return err
}

// Write applies the writes atomically, in order.
func (s *Store) Write(ctx context.Context, writes []api.Write) ([]api.Change, error) {
	return s.submit(ctx, &request{writes: writes})
}

func (s *Store) submit(ctx context.Context, r *request) ([]api.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.done = make(chan struct{})
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- r: // the loop runs until Close, which waits for this lock
	case <-ctx.Done():
		s.mu.RUnlock()
		return nil, ctx.Err()
	}
	s.mu.RUnlock()
	<-r.done // once queued it commits or fails as a whole: wait for the outcome
	return r.changes, r.err
}

func (s *Store) loop() {
	defer close(s.done)
	group := make([]*request, 0, maxGroup)
	for {
		select {
		case <-s.quit:
			s.fail(ErrClosed)
			return
		case r := <-s.reqs:
			group = append(group[:0], r)
		}
		group = s.gather(group)
		s.commit(group)
		s.lastGroup = len(group)
	}
}

// linger is the longest a commit waits for more writers to join.
const linger = 2 * time.Millisecond

// gather adds the waiting requests to group. Writers answered by the last
// commit come back within microseconds: when that commit held several,
// gather waits (at most linger) for as many, so that they share the next
// fsync instead of splitting into one commit of one and one of the rest.
// A lone writer never waits.
func (s *Store) gather(group []*request) []*request {
	var timeout <-chan time.Time
	if s.lastGroup > 1 {
		t := time.NewTimer(linger)
		defer t.Stop()
		timeout = t.C
	}
	for len(group) < maxGroup {
		if len(group) >= s.lastGroup {
			timeout = nil // enough: take only what is already there
		}
		select {
		case r := <-s.reqs:
			group = append(group, r)
			continue
		default:
		}
		if timeout == nil {
			return group
		}
		select {
		case r := <-s.reqs:
			group = append(group, r)
		case <-timeout:
			return group
		}
	}
	return group
}

// fail answers every queued request with err.
func (s *Store) fail(err error) {
	for {
		select {
		case r := <-s.reqs:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}

// commit runs a group of requests in one transaction. A request that fails
// leaves no trace; the others commit.
func (s *Store) commit(group []*request) {
	seq := s.head
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range group {
			if r.stream != nil {
				r.err = putStream(tx, *r.stream)
				continue
			}
			r.changes, r.err = prepare(tx, r.writes)
			if r.err != nil {
				continue
			}
			for i := range r.changes {
				seq++
				r.changes[i].Seq, r.changes[i].Time = seq, now
				if err := putChange(tx, r.changes[i]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	announce := seq > s.head
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
		announce = false
	} else {
		s.head = seq
	}
	for _, r := range group {
		if err != nil {
			r.changes, r.err = nil, err
		}
		close(r.done)
	}
	if announce {
		s.bus.Send(context.Background(), api.TopicChanges, nil)
	}
}

// prepare computes the changes of one atomic batch without writing.
func prepare(tx *bolt.Tx, writes []api.Write) ([]api.Change, error) {
	seen := make(map[string]api.RecordState)
	changes := make([]api.Change, 0, len(writes))
	for i, w := range writes {
		if w.Kind == api.KindEvent {
			changes = append(changes, api.Change{Kind: api.KindEvent, Name: w.Name, Data: w.Data, Publisher: w.Publisher})
			continue
		}
		cur, ok := seen[w.Name]
		if !ok {
			rec, exists := getRecord(tx, w.Name)
			cur = api.RecordState{Version: rec.Version, Data: rec.Data, Exists: exists}
		}
		ch, next, err := w.Next(cur)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) {
				e = api.Internal(err, "write %d (%s)", i, w.Name)
			}
			return nil, e.With("index", i)
		}
		seen[w.Name] = next
		changes = append(changes, ch)
	}
	return changes, nil
}

func getRecord(tx *bolt.Tx, name string) (api.Record, bool) {
	v := tx.Bucket(bucketRecords).Get([]byte(name))
	if v == nil {
		return api.Record{Name: name}, false
	}
	return api.Record{
		Name:    name,
		Version: int64(binary.BigEndian.Uint64(v)),
		Data:    bytes.Clone(v[8:]),
	}, true
}

// putChange appends a change to the log and applies it to the records.
func putChange(tx *bolt.Tx, ch api.Change) error {
	switch ch.Kind {
	case api.KindDelete:
		if err := tx.Bucket(bucketRecords).Delete([]byte(ch.Name)); err != nil {
			return err
		}
	case api.KindSet, api.KindPatch:
		v := make([]byte, 8+len(ch.Data))
		binary.BigEndian.PutUint64(v, uint64(ch.Version))
		copy(v[8:], ch.Data)
		if err := tx.Bucket(bucketRecords).Put([]byte(ch.Name), v); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketLog).Put(seqKey(ch.Seq), encodeChange(ch))
}

func putStream(tx *bolt.Tx, info api.StreamInfo) error {
	v, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketStreams).Put([]byte(info.ID), v)
}

func seqKey(seq int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(seq))
	return k
}

func getInt(b *bolt.Bucket, key []byte) int64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// headOf returns the position of the last change: the last key of the
// log, or when the whole log was trimmed, the last position trimmed. It is
// derived rather than stored so that a commit writes no page but the log's
// and the records'.
func headOf(tx *bolt.Tx) int64 {
	k, _ := tx.Bucket(bucketLog).Cursor().Last()
	if k != nil {
		return int64(binary.BigEndian.Uint64(k))
	}
	return getInt(tx.Bucket(bucketMeta), keyTrimmed)
}

func putInt(b *bolt.Bucket, key []byte, n int64) error {
	return b.Put(key, seqKey(n))
}
