package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// Revoked tokens live in the bbolt file itself, each revocation one
// transaction of its own, outside the write-ahead log: they are rare (a
// logout), must survive a restart, and bbolt's single writer gives them
// positions in commit order. Two buckets, created by the first Revoke:
//
//	revoked:     position (uint64, big-endian) -> until (int64 ns, big-endian) | jti
//	revokedjti:  jti -> position
//
// The position is the bucket's sequence, which only grows (TrimRevocations
// deletes keys, never the sequence): a reader that has read up to a
// position and asks again from it misses nothing.
var (
	bucketRevoked    = []byte("revoked")
	bucketRevokedJTI = []byte("revokedjti")
)

// Revoke stores that the token jti is refused until until.
func (s *Store) Revoke(ctx context.Context, jti string, until time.Time) error {
	if err := api.CheckRevocation(jti, until); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		byPos, err := tx.CreateBucketIfNotExists(bucketRevoked)
		if err != nil {
			return err
		}
		byJTI, err := tx.CreateBucketIfNotExists(bucketRevokedJTI)
		if err != nil {
			return err
		}
		if old := byJTI.Get([]byte(jti)); old != nil {
			if v := byPos.Get(old); len(v) >= 8 {
				until = later(until, time.Unix(0, int64(binary.BigEndian.Uint64(v))))
			}
			if err := byPos.Delete(bytes.Clone(old)); err != nil {
				return err
			}
		}
		seq, err := byPos.NextSequence()
		if err != nil {
			return err
		}
		pos := binary.BigEndian.AppendUint64(nil, seq)
		v := append(binary.BigEndian.AppendUint64(nil, uint64(unixNano(until))), jti...)
		if err := byPos.Put(pos, v); err != nil {
			return err
		}
		return byJTI.Put([]byte(jti), pos)
	})
	if err != nil {
		return fmt.Errorf("revoke a token: %w", closedErr(err))
	}
	return nil
}

// Revocations returns up to limit revocations after position after.
func (s *Store) Revocations(ctx context.Context, after int64, limit int) ([]api.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []api.Revocation
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevoked)
		if b == nil || limit <= 0 {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(max(after, 0))+1)); k != nil && len(out) < limit; k, v = c.Next() {
			if len(k) != 8 || len(v) < 8 {
				return errors.New("corrupt revocation")
			}
			out = append(out, api.Revocation{
				Seq:   int64(binary.BigEndian.Uint64(k)),
				Until: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
				JTI:   string(v[8:]),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", closedErr(err))
	}
	return out, nil
}

// TrimRevocations removes the revocations whose Until is before before.
// It walks every revocation: only the live ones are kept, a few per
// logout within a token's lifetime.
func (s *Store) TrimRevocations(ctx context.Context, before time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cut := unixNano(before)
	err := s.db.Update(func(tx *bolt.Tx) error {
		byPos, byJTI := tx.Bucket(bucketRevoked), tx.Bucket(bucketRevokedJTI)
		if byPos == nil || byJTI == nil {
			return nil
		}
		var old [][]byte // deleting under a cursor can skip keys: collect first
		c := byPos.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) < cut {
				old = append(old, bytes.Clone(k))
			}
		}
		for _, k := range old {
			jti := bytes.Clone(byPos.Get(k)[8:])
			if err := byPos.Delete(k); err != nil {
				return err
			}
			if err := byJTI.Delete(jti); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim revocations: %w", closedErr(err))
	}
	return nil
}

// closedErr says ErrClosed for bbolt's error on a closed file.
func closedErr(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
