package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// appendLog puts changes, which follow the file's log, into it and adds
// their Size to the log's running total (see Trim). A change the file
// holds already is skipped: a checkpoint whose commit reported an error
// may have reached the disk all the same (bbolt wrote its meta page, the
// fsync failed), and its retry must not count it twice.
func appendLog(tx *bolt.Tx, changes []api.Change) error {
	log := tx.Bucket(bucketLog)
	// Positions only grow, so the log's pages are only ever appended to:
	// filled (rather than split at half, bbolt's default), they take half
	// the disk. Measured: a log bounded to 16 MiB kept the file at 33 MB
	// instead of 69 MB.
	log.FillPercent = 1.0
	size, head := logSize(tx), headOf(tx)
	for _, ch := range changes {
		if ch.Seq <= head {
			continue
		}
		if err := log.Put(seqKey(ch.Seq), encodeChange(ch)); err != nil {
			return err
		}
		size += ch.Size()
	}
	return putInt(tx.Bucket(bucketMeta), keyLogBytes, size)
}

// A log entry is binary: the change's time in Unix nanoseconds first (so
// that Trim reads it without decoding), then its version, kind, name,
// publisher and data, each string with a 2-byte length.
func encodeChange(ch api.Change) []byte {
	return appendChange(make([]byte, 0, entryFixed+len(ch.Name)+len(ch.Publisher)+len(ch.Data)), ch)
}

// appendChange appends the encoding of encodeChange to v.
func appendChange(v []byte, ch api.Change) []byte {
	v = binary.BigEndian.AppendUint64(v, uint64(ch.Time.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(ch.Version))
	v = append(v, kindCode[ch.Kind])
	v = binary.BigEndian.AppendUint16(v, uint16(len(ch.Name)))
	v = append(v, ch.Name...)
	v = binary.BigEndian.AppendUint16(v, uint16(len(ch.Publisher)))
	v = append(v, ch.Publisher...)
	return append(v, ch.Data...)
}

// entryFixed is the length of a log entry without its name, publisher and
// data.
const entryFixed = 8 + 8 + 1 + 2 + 2

// entrySize is the api.Change.Size of the change whose entry is v, read
// from its length alone.
func entrySize(v []byte) int64 { return int64(len(v)-entryFixed) + api.ChangeOverhead }

var (
	kindCode = map[api.Kind]byte{api.KindSet: 1, api.KindPatch: 2, api.KindDelete: 3, api.KindEvent: 4}
	kindOf   = map[byte]api.Kind{1: api.KindSet, 2: api.KindPatch, 3: api.KindDelete, 4: api.KindEvent}
)

func decodeChange(seq, v []byte) (api.Change, error) {
	bad := errors.New("corrupt log entry")
	if len(v) < 19 {
		return api.Change{}, bad
	}
	ch := api.Change{
		Seq:     int64(binary.BigEndian.Uint64(seq)),
		Time:    time.Unix(0, int64(binary.BigEndian.Uint64(v))),
		Version: int64(binary.BigEndian.Uint64(v[8:])),
		Kind:    kindOf[v[16]],
	}
	rest := v[17:]
	str := func() (string, bool) {
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest)) {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(rest))
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	var ok1, ok2 bool
	ch.Name, ok1 = str()
	ch.Publisher, ok2 = str()
	if !ok1 || !ok2 || ch.Kind == "" {
		return api.Change{}, bad
	}
	if len(rest) > 0 {
		ch.Data = bytes.Clone(rest)
	}
	return ch, nil
}
