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
	note, ok := decodeChanges(text, nil)
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
		if note, ok := decodeChanges(bad, nil); ok {
			t.Errorf("decodeChanges(%q) = %+v, want refused", bad, note)
		}
	}
	if note, ok := decodeChanges("17", nil); !ok || note.head != 17 || note.changes != nil {
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
		note, ok := decodeChanges(string(p), nil)
		if !ok || len(note.changes) == 0 {
			return
		}
		ptrs := make([]*api.Change, len(note.changes))
		for i := range note.changes {
			ptrs[i] = &note.changes[i]
		}
		k, body := encodeChanges(ptrs, 1<<20)
		n := strconv.Itoa(k)
		again, ok := decodeChanges(n+" "+n+" 0 "+n+"\n"+body, nil)
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
	if _, _, wake := tl.onChanges("3"); !wake {
		t.Fatal("a notification of position 3 woke no one")
	}
	tl.addRead([]api.Change{{Seq: 4}, {Seq: 5}}, tl.generation()) // 5's notification was lost
	if _, known := tl.announced(); known != 3 {
		t.Fatalf("announced %d, want 3: the handlers were woken for 3 only", known)
	}
}

// TestTailWaitHeadTellsWaits: a wait for a position not yet announced
// puts a token in waits (so that a gathered feed goes at once) and ends
// once a notification announces it; a position announced already waits
// for nothing and tells nothing.
func TestTailWaitHeadTellsWaits(t *testing.T) {
	var tl tail
	waits := make(chan struct{}, 1)
	tl.onChanges("3")
	if !tl.waitHead(t.Context(), 3, time.Minute, waits) || len(waits) != 0 {
		t.Fatalf("a wait for an announced position: %d tokens", len(waits))
	}
	waited := make(chan bool)
	go func() { waited <- tl.waitHead(t.Context(), 5, time.Minute, waits) }()
	select {
	case <-waits:
	case <-time.After(5 * time.Second):
		t.Fatal("a wait for position 5 put no token in waits")
	}
	tl.onChanges("5")
	if !<-waited {
		t.Fatal("the wait for position 5 did not end with its notification")
	}
}

// TestTailTakesNotifications: a notification's changes are decoded into
// the tail in place, following it, overlapping its end, after a gap or
// all old, and a text it refuses leaves the tail as it was.
func TestTailTakesNotifications(t *testing.T) {
	var tl tail
	// Changes of different sizes, so that the tail's count of bytes
	// shows which changes it counted.
	data := func(s int64) string {
		return `{"v":` + strconv.FormatInt(s, 10) + `,"p":"` + strings.Repeat("x", int(s%7)) + `"}`
	}
	text := func(from, to int64) string {
		var cs []*api.Change
		for s := from; s <= to; s++ {
			cs = append(cs, &api.Change{Seq: s, Kind: api.KindSet, Name: "r" + strconv.FormatInt(s, 10), Version: s,
				Data: json.RawMessage(data(s)), Time: time.UnixMicro(1)})
		}
		return noteText(cs, 8000)[1:]
	}
	check := func(what string, first, last int64) {
		t.Helper()
		if len(tl.buf) != int(last-first+1) || tl.bytes != sizeOf(tl.buf) {
			t.Fatalf("%s: tail of %d changes (%d bytes, counted %d), want %d to %d", what, len(tl.buf), sizeOf(tl.buf), tl.bytes, first, last)
		}
		for i, c := range tl.buf {
			s := first + int64(i)
			if c.Seq != s || c.Name != "r"+strconv.FormatInt(s, 10) || c.Version != s || string(c.Data) != data(s) {
				t.Fatalf("%s: change %d is %+v, want position %d", what, i, c, s)
			}
		}
		if full := tl.buf[:cap(tl.buf)]; len(full) > len(tl.buf) {
			for i, c := range full[len(tl.buf):] {
				if c.Name != "" || c.Data != nil {
					t.Fatalf("%s: %d past the tail's end still holds %+v", what, i, c)
				}
			}
		}
	}
	for _, step := range []struct {
		what        string
		from, to    int64
		first, last int64
		wake        bool
	}{
		{"first", 3, 5, 3, 5, true},
		{"following", 6, 6, 3, 6, true},
		{"overlapping", 5, 9, 3, 9, true},
		{"all old", 4, 7, 3, 9, false},
		{"after a gap", 12, 13, 12, 13, true},
		{"long", 14, 200, 12, 200, true},
	} {
		head, known, wake := tl.onChanges(text(step.from, step.to))
		if head != step.to || !known || wake != step.wake {
			t.Fatalf("%s: onChanges = %d, %v, %v; want %d, true, %v", step.what, head, known, wake, step.to, step.wake)
		}
		check(step.what, step.first, step.last)
	}
	bad := text(201, 203)
	bad = bad[:len(bad)-3] // the last change's data cut short
	if _, known, _ := tl.onChanges(bad); known {
		t.Fatal("a text cut short was taken")
	}
	check("refused", 12, 200)
	if _, known, wake := tl.onChanges("t100"); !known || wake {
		t.Fatalf("a trim: known %v, wake %v", known, wake)
	}
	check("trimmed", 101, 200)
}

// A notification of changes without data costs no allocation once the
// tail has grown to its size; with data, one (the copy of its body).
func TestTailNotificationAllocations(t *testing.T) {
	var tl tail
	texts := func(from int64, n int, data json.RawMessage) []string {
		out := make([]string, n)
		for i := range out {
			s := from + 2*int64(i)
			out[i] = noteText([]*api.Change{
				{Seq: s - 1, Kind: api.KindEvent, Name: "e", Data: data, Time: time.UnixMicro(1)},
				{Seq: s, Kind: api.KindEvent, Name: "e", Data: data, Time: time.UnixMicro(1)},
			}, 8000)[1:]
		}
		return out
	}
	warm := texts(2, 2*tailSize, nil)
	for _, p := range warm {
		tl.onChanges(p)
	}
	for _, c := range []struct {
		data json.RawMessage
		want float64
	}{{nil, 0}, {json.RawMessage(`{"a":1}`), 1}} {
		next := texts(tl.head+2, 101, c.data)
		i := 0
		got := testing.AllocsPerRun(100, func() {
			tl.onChanges(next[i])
			i++
		})
		if got != c.want {
			t.Errorf("data %s: %.1f allocations per notification, want %.0f", c.data, got, c.want)
		}
	}
}
