package postgres

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The notifications of the changes topic carry the changes themselves
// when they are small, so that an instance reads the log only for what a
// notification could not carry.
//
// A group's notification is sent after its transaction committed, in a
// transaction of its own (announcer), so it announces only committed
// changes; but notifications of different groups may arrive out of the
// order of positions, and one may be lost (the writer died, or its
// connection broke, between the commit and the notification). Its text
// (after the Bus's "=" marker) is
//
//	HEAD N MICROS K\n BODY
//
// HEAD is the group's last position, N its number of changes (positions
// HEAD-N+1 to HEAD), MICROS their time in microseconds since 1970, and
// BODY the first K of them (K < N when they would not fit; 0 when none
// does), each as a line "KIND VERSION NAMELEN PUBLEN DATALEN\n" followed by
// its name, publisher and data, with the lengths in bytes (data of length
// 0 is none). Two other texts arrive on the topic: a bare position from
// the triggers of direct SQL writes (migrations/0002), which carry no
// change, and "t" and a position from Trim, below which the log is gone.
//
// The log stays the truth. A tail keeps the last changes an instance has
// learnt of, consecutive positions only; Changes answers from it when it
// holds everything from the position asked for up to the highest position
// announced (or up to the limit), and reads the log otherwise: after a
// notification that did not carry everything, a gap (a notification not
// yet arrived or lost, a lost connection, a direct write), or when it
// already has every change it was told of. Whatever it answers from the
// tail is a prefix of what the log holds after that position; an answer
// that the log holds nothing more always comes from the log, so
// read-your-writes across instances holds as before.
//
// Handlers of the topic are woken by a notification only when it
// announces a position beyond every one announced to them before: a
// handler woken for position W reads on until the tail or the log has
// nothing more, which includes every position up to W (a committed
// position is visible only after every lower one, package comment), so a
// late notification of a lower position brings nothing new to it. The
// notifications that the listener reads together (one transaction's, or
// a backlog) wake them once, for the highest, when it next reads its
// socket (listener.flushWakes); and a handler that says so
// (Bus.SubscribeWake) is called on the listener's goroutine (or, for
// this instance's own groups, the committer's) with that position, so
// that it can skip a wake-up for what it has read already. A lost
// notification is found by the next one (its changes do not follow
// the tail's, so the handlers read the log for the gap) or, when none
// follows, by Store.watchHead, which reads the head when no notification
// came for a while and announces it when it is beyond every one announced.
// After the listener reconnects, the tail is emptied and every handler is
// woken: whatever was announced meanwhile was missed.

// tailSize is how many changes a tail keeps (up to twice as many between
// cuts), and tailBytes how many bytes of them (by api.Change.Size): past
// it, the oldest go until half of it is left.
const (
	tailSize  = 4096
	tailBytes = 8 << 20
)

// tail is the end of the log as this instance has learnt it: changes at
// consecutive positions first..first+len(buf)-1, and the highest position
// announced (head), which may be beyond them. Every position up to head is
// durable: notifications are sent, and this instance's groups reach the
// tail, after their WAL flush, and reads reach it only once what they saw
// is durable (Store.durable).
type tail struct {
	mu      sync.Mutex
	buf     []api.Change
	bytes   int64 // the Size of buf's changes
	gen     int64 // counts resets: a log read begun before one is not taken in
	head    int64
	trimmed int64         // the log is gone up to here (Trim's notifications)
	woken   int64         // the highest position the topic's handlers were woken for
	noted   bool          // a notification of the changes topic came since watchHead last looked
	moved   chan struct{} // closed when head moves, for waitHead; nil when nobody waits
}

// raise moves the head up to h, waking waitHead's callers.
func (t *tail) raise(h int64) {
	if h <= t.head {
		return
	}
	t.head = h
	if t.moved != nil {
		close(t.moved)
		t.moved = nil
	}
}

// current returns the head.
func (t *tail) current() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.head
}

// waitHead waits until the head reaches h, for at most d; it reports
// whether it did. If it has to wait, it puts a token in waits (never
// blocking).
func (t *tail) waitHead(ctx context.Context, h int64, d time.Duration, waits chan<- struct{}) bool {
	var timeout <-chan time.Time
	for {
		t.mu.Lock()
		if t.head >= h {
			t.mu.Unlock()
			return true
		}
		if t.moved == nil {
			t.moved = make(chan struct{})
		}
		moved := t.moved
		t.mu.Unlock()
		if timeout == nil {
			select {
			case waits <- struct{}{}:
			default:
			}
			timer := time.NewTimer(d)
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case <-moved:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// read returns the changes after position after, up to limit, when the
// tail holds them all up to the announced head or to the limit.
func (t *tail) read(after int64, limit int) ([]api.Change, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 || limit <= 0 || after < t.trimmed {
		return nil, false
	}
	first, last := t.buf[0].Seq, t.buf[len(t.buf)-1].Seq
	if after < first-1 || after >= last {
		return nil, false
	}
	i := int(after - first + 1)
	end := min(i+limit, len(t.buf))
	if end-i < limit && last < t.head {
		return nil, false // more was announced than the tail holds
	}
	return append([]api.Change(nil), t.buf[i:end]...), true
}

// add appends changes announced or committed, in position order; changes
// that do not follow the tail's last one start it anew.
func (t *tail) add(cs []api.Change, head int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(cs, head)
}

// generation returns the count of resets, for addRead.
func (t *tail) generation() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// addRead adds the changes of a log read begun at generation gen, unless
// the tail was reset since: such a read may predate changes whose
// notifications the reconnect lost, and taken in it would let the tail
// answer that the log ends before them.
func (t *tail) addRead(cs []api.Change, gen int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen == t.gen {
		t.addLocked(cs, 0)
	}
}

func (t *tail) addLocked(cs []api.Change, head int64) {
	t.raise(head)
	if len(cs) == 0 {
		return
	}
	// cs may lie in t.buf's spare capacity (onChanges decodes there), so
	// appending moves it: sizes are taken first.
	n := len(t.buf)
	switch {
	case n == 0 || cs[0].Seq > t.buf[n-1].Seq+1: // after a gap: start anew
		size := sizeOf(cs)
		t.drop(n)
		t.buf = append(t.buf, cs...)
		t.bytes = size
	case cs[len(cs)-1].Seq > t.buf[n-1].Seq: // overlaps the end: take what follows it
		more := cs[t.buf[n-1].Seq-cs[0].Seq+1:]
		t.bytes += sizeOf(more)
		t.buf = append(t.buf, more...)
	}
	t.raise(t.buf[len(t.buf)-1].Seq)
	switch n := len(t.buf); {
	case n > 2*tailSize:
		t.drop(n - tailSize)
	case t.bytes > tailBytes:
		i, bytes := 0, t.bytes
		for ; i < n && bytes > tailBytes/2; i++ {
			bytes -= t.buf[i].Size()
		}
		t.drop(i)
	}
}

// drop forgets the tail's first n changes.
func (t *tail) drop(n int) {
	t.bytes -= sizeOf(t.buf[:n])
	left := copy(t.buf, t.buf[n:])
	clear(t.buf[left:]) // let go of their names and data
	t.buf = t.buf[:left]
}

func sizeOf(cs []api.Change) (n int64) {
	for i := range cs {
		n += cs[i].Size()
	}
	return n
}

// reset forgets the changes kept: after the listener reconnects, what was
// announced meanwhile is unknown, so Changes reads the log.
func (t *tail) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drop(len(t.buf))
	t.gen++
}

// announced reports whether a notification came since it was last asked
// (and forgets it), and the highest position the topic's handlers were
// woken for. Not the tail's head: a log read (a stream resuming) may have
// learnt of a position whose notification was lost, and the handlers must
// still be woken for it.
func (t *tail) announced() (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	noted := t.noted
	t.noted = false
	return noted, t.woken
}

// trim forgets the changes up to position seq, which the log no longer has.
func (t *tail) trim(seq int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trimLocked(seq)
}

func (t *tail) trimLocked(seq int64) {
	t.trimmed = max(t.trimmed, seq)
	i := 0
	for i < len(t.buf) && t.buf[i].Seq <= seq {
		i++
	}
	t.drop(i)
}

// encodeChanges returns how many of changes (from the first) fit in max
// bytes of a notification's body, and that body.
func encodeChanges(changes []*api.Change, max int) (int, string) {
	var b strings.Builder
	var line []byte
	for i, c := range changes {
		line = append(line[:0], c.Kind...)
		line = append(line, ' ')
		line = strconv.AppendInt(line, c.Version, 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, int64(len(c.Name)), 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, int64(len(c.Publisher)), 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, int64(len(c.Data)), 10)
		line = append(line, '\n')
		if b.Len()+len(line)+len(c.Name)+len(c.Publisher)+len(c.Data) > max {
			return i, b.String()
		}
		b.Write(line)
		b.WriteString(c.Name)
		b.WriteString(c.Publisher)
		b.Write(c.Data)
	}
	return len(changes), b.String()
}

// changesNote is a decoded notification of the changes topic.
type changesNote struct {
	head    int64        // the last position announced; 0 when none
	changes []api.Change // the changes it carried, in order
	all     []api.Change // dst and the changes appended to it
	trimmed int64        // Trim's: the log is gone up to here; 0 when not
}

// decodeChanges decodes the text of a notification of the changes topic
// (without the Bus's marker); ok is false when it is none of the above.
// The changes are appended to dst (note.changes is what was appended, in
// dst's array when it had room), their names and publishers cut from p
// itself, and their data from one copy of the body: it allocates that
// copy, and nothing per change.
func decodeChanges(p string, dst []api.Change) (note changesNote, ok bool) {
	if len(p) > 0 && p[0] == 't' {
		n, ok := parseInt(p[1:])
		return changesNote{trimmed: n}, ok && n > 0
	}
	header, body, _ := strings.Cut(p, "\n")
	var v [4]int64
	nv, ok := parseInts(header, v[:])
	switch {
	case !ok:
		return changesNote{}, false
	case nv == 1: // a direct write's: the head alone
		return changesNote{head: v[0]}, true
	case nv != 4:
		return changesNote{}, false
	}
	head, n, micros, k := v[0], v[1], v[2], v[3]
	if k < 0 || k > n || n < 1 {
		return changesNote{}, false
	}
	note.head = head
	if k == 0 {
		return note, true
	}
	at := time.UnixMicro(micros)
	from := len(dst)
	whole := body
	var data []byte // whole's copy, once a change has data
	for i := range k {
		line, rest, found := strings.Cut(body, "\n")
		kind, nums, _ := strings.Cut(line, " ")
		var l [4]int64
		if nl, ok := parseInts(nums, l[:]); !found || !ok || nl != 4 || l[1] < 0 || l[2] < 0 || l[3] < 0 {
			clear(dst[from:])
			return changesNote{}, false
		}
		nl, pl, dl := l[1], l[2], l[3]
		if nl+pl+dl > int64(len(rest)) {
			clear(dst[from:])
			return changesNote{}, false
		}
		c := api.Change{Seq: head - n + 1 + i, Time: at, Kind: api.Kind(kind), Version: l[0],
			Name: rest[:nl], Publisher: rest[nl : nl+pl]}
		if dl > 0 {
			if data == nil {
				data = []byte(whole)
			}
			from := int64(len(whole)-len(rest)) + nl + pl
			c.Data = json.RawMessage(data[from : from+dl : from+dl])
		}
		dst = append(dst, c)
		body = rest[nl+pl+dl:]
	}
	note.changes, note.all = dst[from:], dst
	return note, true
}

// parseInts parses the numbers of b, separated by single spaces, into v;
// it returns how many there were (ok false when more than len(v), or not
// numbers).
func parseInts(b string, v []int64) (int, bool) {
	n := 0
	for len(b) > 0 {
		if n == len(v) {
			return n, false
		}
		f, rest, _ := strings.Cut(b, " ")
		x, ok := parseInt(f)
		if !ok {
			return n, false
		}
		v[n], n, b = x, n+1, rest
	}
	return n, n > 0
}

// parseInt parses a decimal number, with an optional minus sign.
func parseInt(b string) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var x int64
	for i := range len(b) {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		x = x*10 + int64(c-'0')
	}
	if neg {
		x = -x
	}
	return x, true
}

// onChanges takes a notification of the changes topic into the tail,
// before the topic's handlers are woken, and says what they get: known
// is false for a text it does not know, which they get as it came; else
// wake says whether they are woken (not for a trim, nor for a position
// not beyond every one they were woken for), with the head announced. p
// is the text after the Bus's "=" marker. The changes carried are
// decoded straight into the tail: with room in it, no allocation but the
// copy of their data.
func (t *tail) onChanges(p string) (head int64, known, wake bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.buf)
	note, known := decodeChanges(p, t.buf)
	switch {
	case !known:
		return 0, false, true
	case note.trimmed > 0:
		t.trimLocked(note.trimmed)
		return 0, true, false
	}
	// The changes carried follow t.buf's in note.all (t.buf's array, or
	// a copy that appending grew): addLocked moves them into place, and
	// what it does not take is cleared.
	if all := note.all; len(all) > n {
		t.buf = all[:n]
		t.addLocked(all[n:], note.head)
		if end := len(t.buf); end < len(all) {
			clear(all[end:])
		}
	} else {
		t.addLocked(nil, note.head)
	}
	t.noted = true
	wake = note.head > t.woken
	t.woken = max(t.woken, note.head)
	return note.head, true, wake
}

// noteText returns the text of the notification of a committed group
// (with the Bus's "=" marker), carrying as many of its changes as fit in
// max bytes.
func noteText(changes []*api.Change, max int) string {
	carried, body := encodeChanges(changes, max)
	last := changes[len(changes)-1]
	b := make([]byte, 0, 64+len(body))
	b = append(b, '=')
	b = strconv.AppendInt(b, last.Seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(changes)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, last.Time.UnixMicro(), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(carried), 10)
	b = append(b, '\n')
	b = append(b, body...)
	return string(b)
}
