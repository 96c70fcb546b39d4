package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The write-ahead log makes a group of writes durable with one write and
// one fsync, where a bbolt commit needs two fsyncs and rewrites pages. The
// commit loop appends every group to it; now and then it checkpoints: the
// entries since the last checkpoint go into the bbolt file in one
// transaction and the log starts again from its beginning.
//
// An entry is
//
//	length uint32 | crc32c uint32 | epoch uint64 | seq uint64 | type byte | body
//
// with the length and checksum covering what follows the checksum. The
// epoch counts checkpoints: it is stored in the bbolt file with each one,
// and an entry of another epoch (left over from before the last
// checkpoint) is not part of the log. A change entry's seq is its log
// position and must follow the entry before it; the last change of a batch
// says so in its type, and a batch counts only when its last change is
// read, so that a crash never leaves part of one. A stream entry (a
// stream's whole state, or a change of one of its parts: see streamOp)
// carries the position it was written at. Reading stops at the first entry that is
// not whole, of the current epoch and in sequence: a write cut short by a
// crash was never acknowledged.
//
// Unless an entry of the current epoch follows it: within an epoch, groups
// are written one after another from the start of the file, and a failed
// write stalls the store until a checkpoint starts the next epoch (as
// recovery always does), so such an entry was written after the one that
// failed to read, and was acknowledged unless the machine lost power while
// both were being written. Reading refuses that log (errDamaged) rather
// than drop it silently.
type wal struct {
	f     *os.File
	fsync func() error // datasync(f); tests make it fail
	epoch uint64
	off   int64  // where the next group goes
	buf   []byte // the group being encoded
}

const (
	walHeader = 4 + 4 + 8 + 8 + 1
	// walPrealloc is how much of the file is written with zeros when it is
	// created, so that appends overwrite allocated blocks and an fsync
	// flushes data only, not the file's growing size.
	walPrealloc = 4 << 20
	// checkpointBytes and checkpointChanges bound the log between
	// checkpoints, and so the memory that holds its changes and the work of
	// a recovery.
	checkpointBytes   = walPrealloc
	checkpointChanges = 4096
	// checkpointRetry is how soon a checkpoint that failed (the disk was
	// full) is tried again. Not sooner: a failed bbolt commit rebuilds its
	// free list by walking the whole file.
	checkpointRetry = 5 * time.Second

	// walCut in place of an entry's length ends the log where a store
	// that broke cut it (syncer.go's fail): the entries after it were
	// never acknowledged. (Older logs were cut with zeros.)
	walCut = 0xffffffff

	entryChange byte = 1
	entryStream byte = 2    // a stream's whole state (PutStream)
	entryEnd    byte = 0x80 // flags the last change of a batch

	// The changes of one part of a stream (streams.go). Logs written
	// before they existed hold none of them and read as they did; a
	// binary that predates them stops reading a log at the first one.
	entryStreamAdd    byte = 3
	entryStreamRemove byte = 4
	entryStreamSince  byte = 5
	entryStreamTouch  byte = 6
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walEntries is what a log holds: its changes in order, and the changes
// of each stream written, in order.
type walEntries struct {
	changes []api.Change
	streams map[string][]streamOp
}

// openWAL opens the log file at path and reads the entries of epoch that
// follow position head.
func openWAL(path string, epoch uint64, head int64) (*wal, walEntries, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, walEntries{}, err
	}
	data, err := io.ReadAll(f)
	if err == nil && len(data) < walPrealloc {
		_, err = f.WriteAt(make([]byte, walPrealloc-len(data)), int64(len(data)))
		if err == nil {
			err = f.Sync()
		}
		if err == nil && len(data) == 0 {
			err = syncDir(filepath.Dir(path)) // a new file: make its name durable too
		}
	}
	if err != nil {
		f.Close()
		return nil, walEntries{}, err
	}
	w := &wal{f: f, fsync: datasync(f), epoch: epoch}
	entries, err := w.read(data, head)
	if err != nil {
		f.Close()
		return nil, walEntries{}, fmt.Errorf("%s: %w", path, err)
	}
	return w, entries, nil
}

// read decodes the entries of data that belong to the log.
func (w *wal) read(data []byte, head int64) (walEntries, error) {
	out := walEntries{streams: map[string][]streamOp{}}
	var batch []api.Change // the changes of a batch whose end is not read yet
	off := 0
	for ; w.whole(data, off); off += 8 + int(binary.BigEndian.Uint32(data[off:])) {
		body := data[off+8 : off+8+int(binary.BigEndian.Uint32(data[off:]))]
		seq, typ, payload := int64(binary.BigEndian.Uint64(body[8:])), body[16], body[17:]
		switch {
		case typ&^entryEnd == entryChange && seq == head+1:
			ch, err := decodeChange(body[8:16], payload)
			if err != nil {
				return out, err // checksummed, so written wrong: do not guess
			}
			batch = append(batch, ch)
			head = seq
			if typ&entryEnd != 0 {
				out.changes, batch = append(out.changes, batch...), nil
			}
		case isStreamEntry(typ) && seq == head && batch == nil:
			op, err := decodeStreamOp(typ, payload)
			if err != nil {
				return out, fmt.Errorf("stream entry at %d: %w", off, err)
			}
			out.streams[op.id] = append(out.streams[op.id], op)
		default:
			return out, damaged(off, off) // whole, of this epoch, yet out of sequence
		}
	}
	if len(data)-off >= 4 && binary.BigEndian.Uint32(data[off:]) == walCut {
		return out, nil // what follows failed and was never acknowledged
	}
	for at := off + 1; at+walHeader <= len(data); at++ {
		if w.whole(data, at) {
			return out, damaged(off, at)
		}
	}
	return out, nil
}

// whole reports whether an entry of the current epoch, its checksum
// right, starts at off.
func (w *wal) whole(data []byte, off int) bool {
	if len(data)-off < walHeader {
		return false
	}
	n := int(binary.BigEndian.Uint32(data[off:]))
	if n < walHeader-8 || off+8+n > len(data) || binary.BigEndian.Uint64(data[off+8:]) != w.epoch {
		return false
	}
	return crc32.Checksum(data[off+8:off+8+n], castagnoli) == binary.BigEndian.Uint32(data[off+4:])
}

// damaged is the error of a log that cannot be read past byte off while
// an entry written after it is whole at byte at.
func damaged(off, at int) error {
	return fmt.Errorf("%w: it cannot be read past byte %d, yet an entry written later is whole at byte %d, "+
		"so starting would lose acknowledged writes; restore the data directory from a backup, or keep only "+
		"what precedes the damage by cutting the file there (truncate -s %d)", errDamaged, off, at, off)
}

// errDamaged says that the write-ahead log is damaged in its middle.
var errDamaged = errors.New("the write-ahead log is damaged")

// addChange encodes a change into the group under way; last says that it
// ends its batch.
func (w *wal) addChange(ch api.Change, last bool) {
	typ := entryChange
	if last {
		typ |= entryEnd
	}
	start := w.begin(typ, ch.Seq)
	w.buf = appendChange(w.buf, ch)
	w.end(start)
}

// addStream encodes a change of a stream, written at position head.
func (w *wal) addStream(op streamOp, head int64) error {
	body, err := op.encode()
	if err != nil {
		return err
	}
	w.add(op.kind, head, body)
	return nil
}

func (w *wal) add(typ byte, seq int64, body []byte) {
	start := w.begin(typ, seq)
	w.buf = append(w.buf, body...)
	w.end(start)
}

// begin appends an entry's header, its length and checksum to be filled
// in by end, and returns where the entry starts; its body follows.
func (w *wal) begin(typ byte, seq int64) int {
	start := len(w.buf)
	w.buf = binary.BigEndian.AppendUint32(w.buf, 0)
	w.buf = binary.BigEndian.AppendUint32(w.buf, 0)
	w.buf = binary.BigEndian.AppendUint64(w.buf, w.epoch)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(seq))
	w.buf = append(w.buf, typ)
	return start
}

// end fills in the length and checksum of the entry that starts at start
// and ends the buffer.
func (w *wal) end(start int) {
	binary.BigEndian.PutUint32(w.buf[start:], uint32(len(w.buf)-start-8))
	binary.BigEndian.PutUint32(w.buf[start+4:], crc32.Checksum(w.buf[start+8:], castagnoli))
}

// reset drops the group under way.
func (w *wal) reset() { w.buf = w.buf[:0] }

// write appends the group under way to the file. The next group goes
// after it, also after an error: the file can no longer be trusted then.
func (w *wal) write() error {
	defer w.reset()
	_, err := w.f.WriteAt(w.buf, w.off)
	w.off += int64(len(w.buf))
	if cap(w.buf) > 4*walPrealloc {
		w.buf = nil // a huge batch went by: do not keep its buffer
	}
	if err != nil {
		return fmt.Errorf("write-ahead log: %w", err)
	}
	return nil
}

// sync waits until what was written is on disk. It may run beside write.
func (w *wal) sync() error {
	if err := w.fsync(); err != nil {
		return fmt.Errorf("write-ahead log: sync: %w", err)
	}
	return nil
}

// cut ends the log at off: the entry there gets the length walCut, which
// ends reading (see read), and the entries after it are no longer part of
// the log. It may run beside write, which appends after off.
func (w *wal) cut(off int64) error {
	if _, err := w.f.WriteAt(binary.BigEndian.AppendUint32(nil, walCut), off); err != nil {
		return fmt.Errorf("write-ahead log: cut: %w", err)
	}
	return w.sync()
}

// restart begins epoch: the entries before it were checkpointed.
func (w *wal) restart(epoch uint64) {
	w.epoch, w.off = epoch, 0
}

// syncDir makes the entries of a directory durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (w *wal) close() error {
	return w.f.Close()
}
