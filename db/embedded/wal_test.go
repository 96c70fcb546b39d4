package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// encodeWAL encodes batches of changes (positions from 1, as many in each
// batch as said) and then a stream into w's group under way, and returns
// where each entry ends.
func encodeWAL(w *wal, batches ...int) []int {
	var ends []int
	seq := int64(0)
	for _, n := range batches {
		for i := range n {
			seq++
			w.addChange(api.Change{Seq: seq, Time: time.Unix(0, seq), Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`"x"`)}, i == n-1)
			ends = append(ends, len(w.buf))
		}
	}
	w.addStream(streamOp{kind: entryStream, id: "s", info: api.StreamInfo{ID: "s", User: "u", Updated: time.Unix(0, seq)}}, seq)
	w.addStream(streamOp{kind: entryStreamAdd, id: "s", sub: api.StreamSub{Subscription: api.Subscription{Event: "e"}, Since: seq}, updated: time.Unix(0, seq+1)}, seq)
	return append(ends, len(w.buf))
}

func readWAL(t *testing.T, data []byte, epoch uint64, head int64) walEntries {
	t.Helper()
	got, err := (&wal{epoch: epoch}).read(data, head)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

// wantSeqs checks that the changes read are positions from to to.
func wantSeqs(t *testing.T, got walEntries, from, to int64) {
	t.Helper()
	if int64(len(got.changes)) != max(0, to-from+1) {
		t.Fatalf("read %d changes, want %d to %d", len(got.changes), from, to)
	}
	for i, c := range got.changes {
		if c.Seq != from+int64(i) || c.Name != "e" || string(c.Data) != `"x"` {
			t.Fatalf("change %d = %+v, want seq %d", i, c, from+int64(i))
		}
	}
}

// A flushed group reads back when the file is opened again, which also
// preallocates it.
func TestWALRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.wal")
	w, found, err := openWAL(path, 7, 0)
	if err != nil || len(found.changes) != 0 {
		t.Fatalf("openWAL(new) = %+v, %v", found, err)
	}
	encodeWAL(w, 2, 3)
	if err := w.write(); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	w.close()
	if fi, err := os.Stat(path); err != nil || fi.Size() < walPrealloc {
		t.Fatalf("the file is %v (%v), want %d bytes preallocated", fi, err, walPrealloc)
	}
	w, found, err = openWAL(path, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	wantSeqs(t, found, 1, 5)
	ops := found.streams["s"]
	if len(ops) != 2 || ops[0].kind != entryStream || ops[0].info.User != "u" || ops[0].info.Updated.UnixNano() != 5 ||
		ops[1].kind != entryStreamAdd || ops[1].sub.Event != "e" || ops[1].sub.Since != 5 || ops[1].updated.UnixNano() != 6 {
		t.Errorf("stream s = %+v, want the ops written", ops)
	}
}

// Reading stops at the first entry that is cut short or of another epoch,
// or at a cut: what comes before it is the log.
func TestWALStopsAtBadEntry(t *testing.T) {
	w := &wal{epoch: 7}
	ends := encodeWAL(w, 1, 1, 1, 1)
	data := w.buf

	wantSeqs(t, readWAL(t, data[:ends[2]-1], 7, 0), 1, 2) // the third cut short
	wantSeqs(t, readWAL(t, data, 6, 0), 1, 0)             // another epoch: nothing
	if got := readWAL(t, data[:ends[3]], 7, 0); len(got.streams) != 0 {
		t.Errorf("streams before their entry: %+v", got.streams)
	}
	torn := append(append([]byte(nil), data[:ends[1]]...), 0, 0, 0, 40, 1, 2, 3) // a header, then garbage
	wantSeqs(t, readWAL(t, append(torn, make([]byte, 100)...), 7, 0), 1, 2)
	before := &wal{epoch: 6} // the epoch before: left after the log's end
	encodeWAL(before, 1, 1, 1, 1)
	old := append(append([]byte(nil), data[:ends[1]]...), before.buf[ends[1]:]...)
	wantSeqs(t, readWAL(t, old, 7, 0), 1, 2)

	// A cut (a store that broke) leaves failed groups after it.
	cut := append([]byte(nil), data...)
	binary.BigEndian.PutUint32(cut[ends[1]:], walCut)
	wantSeqs(t, readWAL(t, cut, 7, 0), 1, 2)
}

// An entry that cannot be read while a later entry of the epoch is whole
// is damage in the middle of the log, not its torn end: reading refuses
// the log rather than lose what was acknowledged after it.
func TestWALRefusesDamageInTheMiddle(t *testing.T) {
	w := &wal{epoch: 7}
	ends := encodeWAL(w, 1, 1, 1, 1)
	data := w.buf
	for name, damage := range map[string]func([]byte) []byte{
		"a flipped byte":  func(d []byte) []byte { d[ends[1]+10] ^= 1; return d },
		"a broken length": func(d []byte) []byte { d[ends[1]] = 0x7f; return d },
		"zeros":           func(d []byte) []byte { clear(d[ends[1] : ends[1]+12]); return d },
		"out of sequence": func(d []byte) []byte { return append(d[:ends[1]:ends[1]], data...) },
		"before the head": func(d []byte) []byte { return d[:ends[0]] }, // read with head 1 below
	} {
		head := int64(0)
		if name == "before the head" {
			head = 1
		}
		_, err := (&wal{epoch: 7}).read(damage(append([]byte(nil), data...)), head)
		if !errors.Is(err, errDamaged) {
			t.Errorf("%s: read = %v, want the log refused", name, err)
		}
	}
}

// A batch counts whole or not at all: cut after two of its three changes,
// none of them is read.
func TestWALKeepsWholeBatches(t *testing.T) {
	w := &wal{epoch: 7}
	ends := encodeWAL(w, 1, 3)
	wantSeqs(t, readWAL(t, w.buf, 7, 0), 1, 4)
	for _, cut := range []int{ends[1], ends[2], ends[3] - 1} {
		wantSeqs(t, readWAL(t, w.buf[:cut], 7, 0), 1, 1)
	}
}

// FuzzWALRead: the reader never panics on any bytes, and what it returns
// is in sequence from the head.
func FuzzWALRead(f *testing.F) {
	w := &wal{epoch: 7}
	encodeWAL(w, 1, 2)
	f.Add(w.buf, int64(0))
	f.Add(w.buf[:40], int64(0))
	f.Fuzz(func(t *testing.T, data []byte, head int64) {
		got, err := (&wal{epoch: 7}).read(data, head)
		if err != nil {
			return
		}
		for i, c := range got.changes {
			if c.Seq != head+1+int64(i) {
				t.Fatalf("change %d has seq %d after head %d", i, c.Seq, head)
			}
		}
	})
}
