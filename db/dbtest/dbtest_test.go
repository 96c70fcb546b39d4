package dbtest_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/dbtest"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// TestMemory runs the suite against memStore, a plain reading of the
// contract, so that the suite itself is known to be passable.
func TestMemory(t *testing.T) {
	dbtest.Run(t, func(t *testing.T) api.Store {
		s := &memStore{records: map[string]api.Record{}, streams: map[string]api.StreamInfo{}}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// memStore is an api.Store in memory behind one mutex: the reference
// against which the suite is checked. Seqs step by 2, to show that the
// suite does not assume consecutive positions.
type memStore struct {
	mu      sync.Mutex
	records map[string]api.Record
	log     []api.Change
	seq     int64 // the last Seq given
	trimmed int64 // the Seq of the last trimmed change
	streams map[string]api.StreamInfo
	closed  bool

	presence           map[string]map[string]time.Time // instance -> user -> expiry (presence_test.go)
	embedded.Listening                                 // in memory already: the embedded store's

	memRevocations // revoke_test.go
}

var _ api.Store = (*memStore)(nil)

func (s *memStore) Get(ctx context.Context, name string) (api.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[name]
	if !ok || r.Data == nil { // missing, or a tombstone
		return api.Record{}, api.NotFound(name)
	}
	return r, nil
}

func (s *memStore) List(ctx context.Context, prefix, after string, limit int) ([]api.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.Record
	for name, r := range s.records {
		if strings.HasPrefix(name, prefix) && name > after && r.Data != nil {
			out = append(out, api.Record{Name: name, Version: r.Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out[:min(limit, len(out))], nil
}

func (s *memStore) ListData(ctx context.Context, prefix, after string, limit int) (int64, []api.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.Record
	for name, r := range s.records {
		if strings.HasPrefix(name, prefix) && name > after && r.Data != nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return s.seq, out[:min(limit, len(out))], nil
}

func (s *memStore) Write(ctx context.Context, writes []api.Write) ([]api.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("closed")
	}
	// A record with nil Data is a tombstone: deleted at its Version, which
	// the next creation continues after. A missing record: version 0.
	staged := map[string]api.Record{}
	get := func(name string) api.Record {
		if r, ok := staged[name]; ok {
			return r
		}
		return s.records[name]
	}
	now := time.Now()
	seq := s.seq
	var out []api.Change
	for i, w := range writes {
		seq += 2
		c := api.Change{Seq: seq, Time: now, Kind: w.Kind, Name: w.Name}
		if w.Kind == api.KindEvent {
			c.Data, c.Publisher = w.Data, w.Publisher
			out = append(out, c)
			continue
		}
		cur := get(w.Name)
		exists, version := cur.Data != nil, cur.Version
		if !exists {
			version = 0
		}
		if (w.IfMatch != 0 && w.IfMatch != version) || (w.IfNoneMatch && exists) || (w.IfExists && !exists) {
			return nil, api.Conflict(w.Name, version).With("index", i)
		}
		c.Version = cur.Version + 1
		if w.Kind == api.KindDelete {
			if w.Check != nil {
				if err := w.Check(cur.Data, exists); err != nil {
					return nil, err.(*api.Error).With("index", i)
				}
			}
			if !exists {
				return nil, api.NotFound(w.Name).With("index", i)
			}
			staged[w.Name] = api.Record{Name: w.Name, Version: c.Version}
			out = append(out, c)
			continue
		}
		data, err := w.Apply(slices.Clone(cur.Data), exists)
		if err != nil {
			e, ok := err.(*api.Error)
			if !ok {
				e = api.Errorf(api.CodeInternal, "%v", err)
			}
			return nil, e.With("index", i)
		}
		if !exists {
			c.Kind = api.KindSet // a record's first value is set, whatever wrote it
		}
		c.Data, c.Created = slices.Clone(data), !exists
		staged[w.Name] = api.Record{Name: w.Name, Version: c.Version, Data: c.Data}
		out = append(out, c)
	}
	for name, r := range staged {
		s.records[name] = r
	}
	s.seq = seq
	s.log = append(s.log, out...)
	return out, nil
}

func (s *memStore) Snapshot(ctx context.Context, names []string) (int64, []api.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Record, len(names))
	for i, name := range names {
		if r := s.records[name]; r.Data != nil {
			out[i] = r
		}
		out[i].Name = name
	}
	return s.seq, out, nil
}

func (s *memStore) Changes(ctx context.Context, after int64, limit int) ([]api.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if after < s.trimmed {
		return nil, api.ErrTrimmed
	}
	var out []api.Change
	for _, c := range s.log {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *memStore) Trim(ctx context.Context, o api.TrimOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var size int64
	for _, c := range s.log {
		size += c.Size()
	}
	i := 0
	for i < len(s.log) && (s.log[i].Time.Before(o.Before) || o.MaxBytes > 0 && size > o.MaxBytes) {
		s.trimmed = s.log[i].Seq
		size -= s.log[i].Size()
		i++
	}
	s.log = s.log[i:]
	for id, st := range s.streams {
		if st.Updated.Before(o.Before) {
			delete(s.streams, id)
		}
	}
	return nil
}

func (s *memStore) PutStream(ctx context.Context, st api.StreamInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := st.Subs
	st.Subs = nil
	for _, x := range subs {
		if memFind(st.Subs, x.Subscription) < 0 {
			st.Subs = append(st.Subs, x)
		}
	}
	s.streams[st.ID] = st
	return nil
}

// memChange runs fn on the stored stream id under the lock.
func (s *memStore) memChange(id string, fn func(st *api.StreamInfo)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[id]
	if !ok {
		return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	fn(&st)
	s.streams[id] = st
	return nil
}

func memFind(subs []api.StreamSub, x api.Subscription) int {
	return slices.IndexFunc(subs, func(y api.StreamSub) bool { return y.Subscription == x })
}

func (s *memStore) AddStreamSub(ctx context.Context, id string, sub api.StreamSub, updated time.Time) error {
	return s.memChange(id, func(st *api.StreamInfo) {
		if memFind(st.Subs, sub.Subscription) < 0 {
			st.Subs = append(slices.Clip(st.Subs), sub)
		}
		st.Updated = updated
	})
}

func (s *memStore) RemoveStreamSub(ctx context.Context, id string, sub api.Subscription, updated time.Time) error {
	return s.memChange(id, func(st *api.StreamInfo) {
		if i := memFind(st.Subs, sub); i >= 0 {
			st.Subs = slices.Delete(slices.Clone(st.Subs), i, i+1)
		}
		st.Updated = updated
	})
}

func (s *memStore) SetStreamSince(ctx context.Context, id string, sub api.StreamSub) error {
	return s.memChange(id, func(st *api.StreamInfo) {
		if i := memFind(st.Subs, sub.Subscription); i >= 0 {
			st.Subs = slices.Clone(st.Subs)
			st.Subs[i].Since = sub.Since
		}
	})
}

func (s *memStore) TouchStream(ctx context.Context, id string, updated time.Time) error {
	return s.memChange(id, func(st *api.StreamInfo) { st.Updated = updated })
}

func (s *memStore) GetStream(ctx context.Context, id string) (api.StreamInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[id]
	if !ok {
		return api.StreamInfo{}, api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	st.Subs = slices.Clone(st.Subs)
	return st, nil
}

func (s *memStore) Ping(ctx context.Context) error { return nil }

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
