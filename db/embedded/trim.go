package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// trimBatch bounds the changes one trimming transaction removes, so that
// writers (whose checkpoints wait for bbolt's one writer) never wait long.
const trimBatch = 1000

// Trim removes the changes outside o, trimBatch per transaction, then the
// streams not updated since o.Before. It checkpoints first, so that every
// change it may cut is in the bbolt file; what the log holds in memory
// since then is counted by the next Trim. A Trim by size alone (no
// Before) of a log within o.MaxBytes returns at once.
//
// The size of the log is a running total in the meta bucket (keyLogBytes),
// kept by the transactions that change the log: checkpoints add, Trim
// subtracts. Finding the cut reads only the entries it removes.
func (s *Store) Trim(ctx context.Context, o api.TrimOptions) error {
	if o.Before.IsZero() && o.MaxBytes > 0 {
		// By size alone, a log within its bound has nothing to trim: this
		// spares an idle store a checkpoint and a commit at every such
		// Trim. unsaved is read first: a checkpoint in between counts its
		// changes twice, never none.
		size := s.unsaved.Load()
		if err := s.read(func(tx *bolt.Tx) error { size += logSize(tx); return nil }); err != nil {
			return closedErr(err)
		}
		if size <= o.MaxBytes {
			return nil
		}
	}
	if _, err := s.committer.Do(ctx, work{checkpoint: true}); err != nil {
		return err
	}
	for more := true; more; {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if more, err = s.trimLog(o); err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
	}
	if o.Before.IsZero() {
		return nil // no stream is older: spare the walk over every one
	}
	if err := s.trimStreams(ctx, o.Before); err != nil {
		return fmt.Errorf("trim streams: %w", err)
	}
	return nil
}

// trimLog removes up to trimBatch of the oldest changes outside o in one
// transaction, and reports whether there may be more.
func (s *Store) trimLog(o api.TrimOptions) (more bool, err error) {
	cut := unixNano(o.Before)
	err = s.db.Update(func(tx *bolt.Tx) error {
		log, meta := tx.Bucket(bucketLog), tx.Bucket(bucketMeta)
		size := logSize(tx)
		var old [][]byte // deleting under a cursor can skip keys: collect first
		c := log.Cursor()
		for k, v := c.First(); k != nil && len(old) < trimBatch; k, v = c.Next() {
			if int64(binary.BigEndian.Uint64(v)) >= cut && (o.MaxBytes <= 0 || size <= o.MaxBytes) {
				break
			}
			old = append(old, k)
			size -= entrySize(v)
		}
		more = len(old) == trimBatch
		if len(old) == 0 {
			return nil
		}
		for _, k := range old {
			if err := log.Delete(k); err != nil {
				return err
			}
		}
		if err := putInt(meta, keyLogBytes, size); err != nil {
			return err
		}
		return putInt(meta, keyTrimmed, int64(binary.BigEndian.Uint64(old[len(old)-1])))
	})
	return more, err
}

// trimStreams removes the streams not updated since before, with their
// subscriptions. It finds them in the file, which Trim's checkpoint has
// just brought up to date, and has the commit loop remove them, trimBatch
// at a time (see dropStreams).
func (s *Store) trimStreams(ctx context.Context, before time.Time) error {
	var old []string
	err := s.read(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStreams).ForEach(func(k, v []byte) error {
			h, err := decodeHeader(string(k), v)
			if err != nil || h.Updated.Before(before) {
				old = append(old, string(k))
			}
			return nil
		})
	})
	for err == nil && len(old) > 0 {
		n := min(len(old), trimBatch)
		_, err = s.committer.Do(ctx, work{checkpoint: true, drop: &streamDrop{ids: old[:n], before: before}})
		old = old[n:]
	}
	return err
}

// streamDrop asks the commit loop to remove streams not updated since
// before.
type streamDrop struct {
	ids    []string
	before time.Time
}

// dropStreams removes the streams of d that are still not updated since
// d.before. Only the commit loop calls it, right after a checkpoint: the
// file then holds every op written, and none comes between the check and
// the removal, so that a stream changed meanwhile stays and no op of a
// stream that goes is left for a later checkpoint.
func (s *Store) dropStreams(d streamDrop) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range d.ids {
			v := tx.Bucket(bucketStreams).Get([]byte(id))
			if v == nil {
				continue
			}
			if h, err := decodeHeader(id, v); err == nil && !h.Updated.Before(d.before) {
				continue
			}
			if err := deleteStream(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// logSize returns the Size of the changes in the file's log added up: the
// running total, or for a file written before there was one, the sum
// over the log (once: the caller stores the total it computes).
func logSize(tx *bolt.Tx) int64 {
	if v := tx.Bucket(bucketMeta).Get(keyLogBytes); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	var size int64
	tx.Bucket(bucketLog).ForEach(func(_, v []byte) error {
		size += entrySize(v)
		return nil
	})
	return size
}

// unixNano is t in Unix nanoseconds, the form of times in the log, with
// times out of its range (the zero time, say) at its ends.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
