package postgres

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// A notification's text decodes to the changes encoded, whatever their
// names and data hold; what does not fit is left for the log; texts that
// are not a notification of changes are refused, never half decoded.
func TestChangesText(t *testing.T) {
	changes := []*api.Change{
		{Kind: api.KindSet, Name: "a b\nc", Version: 3, Data: json.RawMessage(`{"x":"1 2\n3"}`)},
		{Kind: api.KindEvent, Name: "ev", Publisher: "user 7"},
		{Kind: api.KindDelete, Name: "é", Version: 9},
	}
	k, body := encodeChanges(changes, 1000)
	if k != 3 {
		t.Fatalf("encodeChanges carried %d of 3", k)
	}
	at := time.UnixMicro(1_700_000_000_123_456)
	text := "42 3 1700000000123456 3\n" + body
	note, ok := decodeChanges(text)
	if !ok || note.head != 42 || len(note.changes) != 3 {
		t.Fatalf("decodeChanges = %+v, %v", note, ok)
	}
	for i, c := range note.changes {
		w := *changes[i]
		w.Seq, w.Time = int64(40+i), at
		if c.Seq != w.Seq || !c.Time.Equal(w.Time) || c.Kind != w.Kind || c.Name != w.Name || c.Version != w.Version ||
			string(c.Data) != string(w.Data) || (c.Data == nil) != (w.Data == nil) || c.Publisher != w.Publisher {
			t.Errorf("change %d = %+v, want %+v", i, c, w)
		}
	}
	if k, _ := encodeChanges(changes, 40); k != 1 {
		t.Errorf("encodeChanges in 40 bytes carried %d, want 1", k)
	}
	for _, bad := range []string{"", "x", "1 2 3", "5 2 0 3\n", "5 2 0 1\nset 1 9 0 0\nab", "5 2 0 1\nset 1 -1 0 0\n", "tx"} {
		if note, ok := decodeChanges(bad); ok {
			t.Errorf("decodeChanges(%q) = %+v, want refused", bad, note)
		}
	}
	if note, ok := decodeChanges("17"); !ok || note.head != 17 || note.changes != nil {
		t.Errorf("a direct write's notification decodes to %+v, %v", note, ok)
	}
}

// The tail answers only for a run of positions it holds up to the head
// announced (or the limit), and forgets what was trimmed.
func TestTail(t *testing.T) {
	var tl tail
	ch := func(from, to int64) []api.Change {
		var cs []api.Change
		for s := from; s <= to; s++ {
			cs = append(cs, api.Change{Seq: s})
		}
		return cs
	}
	tl.add(ch(5, 7), 7)
	tl.add(ch(7, 9), 9) // overlaps
	if cs, ok := tl.read(4, 10); !ok || len(cs) != 5 || cs[0].Seq != 5 {
		t.Errorf("read(4) = %v, %v", cs, ok)
	}
	if _, ok := tl.read(3, 10); ok {
		t.Error("read(3) answered without position 4")
	}
	if _, ok := tl.read(9, 10); ok {
		t.Error("read(9) answered that nothing follows the head")
	}
	tl.add(nil, 12) // announced, not carried
	if _, ok := tl.read(6, 10); ok {
		t.Error("read(6) answered without 10 to 12")
	}
	if cs, ok := tl.read(6, 2); !ok || len(cs) != 2 || cs[1].Seq != 8 {
		t.Errorf("read(6, 2) = %v, %v", cs, ok)
	}
	tl.add(ch(14, 15), 15) // a gap: starts anew
	if _, ok := tl.read(9, 10); ok {
		t.Error("read(9) answered across a gap")
	}
	if cs, ok := tl.read(13, 10); !ok || len(cs) != 2 {
		t.Errorf("read(13) = %v, %v", cs, ok)
	}
	tl.trim(14)
	if _, ok := tl.read(13, 10); ok {
		t.Error("read(13) answered after a trim up to 14")
	}
	if cs, ok := tl.read(14, 10); !ok || len(cs) != 1 {
		t.Errorf("read(14) = %v, %v", cs, ok)
	}
}

// No text makes decodeChanges panic, and what it accepts encodes back
// to the same changes.
func FuzzDecodeChanges(f *testing.F) {
	f.Add([]byte("42 3 1700000000123456 2\nset 3 3 0 2\nabc{}\nevent 0 1 1 0\nxy"))
	f.Add([]byte("17"))
	f.Add([]byte("t9"))
	f.Add([]byte("5 2 0 1\nset 1 -1 0 0\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		note, ok := decodeChanges(string(p))
		if !ok || len(note.changes) == 0 {
			return
		}
		ptrs := make([]*api.Change, len(note.changes))
		for i := range note.changes {
			ptrs[i] = &note.changes[i]
		}
		k, body := encodeChanges(ptrs, 1<<20)
		n := strconv.Itoa(k)
		again, ok := decodeChanges(n + " " + n + " 0 " + n + "\n" + body)
		if k != len(ptrs) || !ok || len(again.changes) != k {
			t.Fatalf("re-encoding %+v: %d carried, decoded %+v, %v", note.changes, k, again, ok)
		}
		for i, c := range again.changes {
			w := note.changes[i]
			if c.Kind != w.Kind || c.Name != w.Name || c.Version != w.Version || c.Publisher != w.Publisher || string(c.Data) != string(w.Data) {
				t.Fatalf("change %d re-encoded as %+v, want %+v", i, c, w)
			}
		}
	})
}

// A tail cut back to tailSize keeps the last changes, in order, and goes
// on answering and growing from them.
func TestTailCut(t *testing.T) {
	var tl tail
	for s := int64(1); s <= 3*tailSize; s++ {
		tl.add([]api.Change{{Seq: s, Name: strconv.FormatInt(s, 10)}}, s)
	}
	last := int64(3 * tailSize)
	got, ok := tl.read(last-tailSize, 10)
	if !ok || len(got) != 10 || got[0].Seq != last-tailSize+1 || got[0].Name != strconv.FormatInt(last-tailSize+1, 10) {
		t.Fatalf("read after the cut = %d changes from %+v, %v", len(got), got[:min(1, len(got))], ok)
	}
	if _, ok := tl.read(last-2*tailSize-1, 10); ok {
		t.Errorf("the tail answered for positions it cut")
	}
	got, ok = tl.read(last-3, 10)
	if !ok || len(got) != 3 || got[2].Seq != last {
		t.Errorf("read of the end = %+v, %v", got, ok)
	}
}

// TestTailBytes: the tail keeps at most tailBytes of changes, the newest,
// still at consecutive positions, and counts them right.
func TestTailBytes(t *testing.T) {
	var tl tail
	data := json.RawMessage(`"` + strings.Repeat("x", 100<<10) + `"`)
	const n = 200 // 20 MB of changes
	for s := int64(1); s <= n; s++ {
		tl.add([]api.Change{{Seq: s, Name: "r", Data: data}}, s)
		if tl.bytes > tailBytes || tl.bytes != sizeOf(tl.buf) {
			t.Fatalf("after %d: %d bytes kept, counted %d (bound %d)", s, sizeOf(tl.buf), tl.bytes, tailBytes)
		}
	}
	for i, c := range tl.buf {
		if c.Seq != n-int64(len(tl.buf))+1+int64(i) {
			t.Fatalf("change %d at %d: not the newest, consecutive", i, c.Seq)
		}
	}
	if got, ok := tl.read(n-3, 10); !ok || len(got) != 3 || got[2].Seq != n {
		t.Errorf("read of the end = %d changes, %v", len(got), ok)
	}
}

// TestTailReadBeforeReset: a log read begun before a reconnect emptied the
// tail is not taken in (it may predate changes whose notifications were
// lost); one begun after is.
func TestTailReadBeforeReset(t *testing.T) {
	var tl tail
	stale := tl.generation()
	tl.reset()
	tl.addRead([]api.Change{{Seq: 41}, {Seq: 42}}, stale)
	if _, ok := tl.read(40, 10); ok {
		t.Fatal("the tail answered from a read begun before the reset")
	}
	tl.addRead([]api.Change{{Seq: 41}, {Seq: 42}}, tl.generation())
	if got, ok := tl.read(40, 10); !ok || len(got) != 2 {
		t.Fatalf("read after a fresh log read = %v, %v", got, ok)
	}
}

// TestTailAnnouncedIsWhatWoke: what a log read learnt does not count as
// announced, so watchHead still wakes the handlers for a position whose
// notification was lost, though a resuming stream read it first.
func TestTailAnnouncedIsWhatWoke(t *testing.T) {
	var tl tail
	if _, ok := tl.onChanges("3"); !ok {
		t.Fatal("a notification of position 3 woke no one")
	}
	tl.addRead([]api.Change{{Seq: 4}, {Seq: 5}}, tl.generation()) // 5's notification was lost
	if _, known := tl.announced(); known != 3 {
		t.Fatalf("announced %d, want 3: the handlers were woken for 3 only", known)
	}
}
