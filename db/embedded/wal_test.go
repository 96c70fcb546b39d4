package embedded

import (
	"encoding/json"
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

// Reading stops at the first entry that is cut short, damaged, of another
// epoch or out of sequence: what comes before it is the log.
func TestWALStopsAtBadEntry(t *testing.T) {
	w := &wal{epoch: 7}
	ends := encodeWAL(w, 1, 1, 1, 1)
	data := w.buf

	torn := append([]byte(nil), data...)
	torn[ends[1]+10] ^= 1 // inside the third change
	wantSeqs(t, readWAL(t, torn, 7, 0), 1, 2)

	wantSeqs(t, readWAL(t, data[:ends[2]-1], 7, 0), 1, 2) // the third cut short
	wantSeqs(t, readWAL(t, data, 6, 0), 1, 0)             // another epoch: nothing
	wantSeqs(t, readWAL(t, data, 7, 1), 1, 0)             // not after the head: nothing

	stale := append(append([]byte(nil), data[:ends[1]]...), data...) // the log again after change 2
	wantSeqs(t, readWAL(t, stale, 7, 0), 1, 2)
	if got := readWAL(t, data[:ends[3]], 7, 0); len(got.streams) != 0 {
		t.Errorf("streams before their entry: %+v", got.streams)
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
