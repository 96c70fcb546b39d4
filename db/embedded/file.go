package embedded

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// The bbolt file's buckets: records (name -> version uint64 | data, or
// only the version: the tombstone of a deleted record, kept for good so
// that its next creation continues after it; see getRecord), log
// (position -> change: log.go), streams and streamsubs (streamfile.go),
// and meta, whose keys hold numbers: the position trimmed up to, the
// write-ahead log's epoch, and the log's size (trim.go).
var (
	bucketRecords = []byte("records")
	bucketLog     = []byte("log")
	bucketStreams = []byte("streams")
	bucketMeta    = []byte("meta")
	keyTrimmed    = []byte("trimmed")
	keyEpoch      = []byte("epoch")
	keyLogBytes   = []byte("logbytes")
)

// getRecord returns a record as the file holds it, and whether it exists.
// A deleted record comes back with the version of its delete (and no
// data): the version its next creation continues after.
func getRecord(tx *bolt.Tx, name string) (api.Record, bool) {
	v := tx.Bucket(bucketRecords).Get([]byte(name))
	if len(v) < 8 {
		return api.Record{Name: name}, false
	}
	if isTombstone(v) {
		return api.Record{Name: name, Version: int64(binary.BigEndian.Uint64(v))}, false
	}
	return api.Record{
		Name:    name,
		Version: int64(binary.BigEndian.Uint64(v)),
		Data:    bytes.Clone(v[8:]),
	}, true
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

// isTombstone reports whether a value of the records bucket is a deleted
// record's: a version and no data (a record's data is JSON, never empty).
func isTombstone(v []byte) bool { return len(v) == 8 }

// tombstone is the records bucket's value for a record deleted at version.
func tombstone(version int64) []byte { return seqKey(version) }
