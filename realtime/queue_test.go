package realtime

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// sized returns a delivery of change seq that costs size bytes.
func sized(seq int64, size int) *delivery {
	return &delivery{change: &api.Change{Seq: seq}, size: size}
}

func seqs(batch []*delivery) []int64 {
	out := make([]int64, len(batch))
	for i, d := range batch {
		out[i] = d.change.Seq
	}
	return out
}

// TestQueueOrder: take returns what was pushed, oldest first, and leaves
// the queue empty.
func TestQueueOrder(t *testing.T) {
	q := queue{limit: 1 << 20}
	for seq := range int64(5) {
		if ok, _ := q.push(sized(seq+1, 10)); !ok {
			t.Fatalf("push %d refused", seq+1)
		}
	}
	if got := seqs(q.take()); len(got) != 5 || got[0] != 1 || got[4] != 5 {
		t.Fatalf("took %v, want [1 2 3 4 5]", got)
	}
	if got := q.take(); len(got) != 0 {
		t.Fatalf("second take %v, want nothing", seqs(got))
	}
}

// TestQueueBytes: the queue counts the size of what waits, not the
// number of deliveries, and take gives the bytes back.
func TestQueueBytes(t *testing.T) {
	q := queue{limit: 1 << 20}
	sizes := []int{1, 700, 0, 256}
	total := 0
	for i, size := range sizes {
		q.push(sized(int64(i+1), size))
		total += size
		if n, bytes := q.queued(); n != i+1 || bytes != total {
			t.Fatalf("after push %d: %d deliveries of %d bytes, want %d of %d", i+1, n, bytes, i+1, total)
		}
	}
	q.recycle(q.take())
	if n, bytes := q.queued(); n != 0 || bytes != 0 {
		t.Fatalf("after take: %d deliveries of %d bytes, want none", n, bytes)
	}
}

// TestQueueLimit: a push that would take the queue past its limit is
// refused and changes nothing; one that fills it exactly is taken; taking
// the queue makes room again.
func TestQueueLimit(t *testing.T) {
	q := queue{limit: 100}
	steps := []struct {
		size int
		ok   bool
	}{
		{40, true},
		{40, true},
		{30, false}, // 110 > 100
		{20, true},  // exactly 100
		{1, false},
		{0, true}, // costs nothing
	}
	queued := 0
	for i, step := range steps {
		if got, _ := q.push(sized(int64(i+1), step.size)); got != step.ok {
			t.Fatalf("push %d of %d bytes: %v, want %v", i+1, step.size, got, step.ok)
		}
		if step.ok {
			queued++
		}
		if n, bytes := q.queued(); n != queued || bytes > q.limit {
			t.Fatalf("after push %d: %d deliveries of %d bytes, want %d of at most %d", i+1, n, bytes, queued, q.limit)
		}
	}
	if got := seqs(q.take()); len(got) != 4 || got[2] != 4 || got[3] != 6 {
		t.Fatalf("took %v, want [1 2 4 6]: a refused push is not queued", got)
	}
	if ok, _ := q.push(sized(7, 100)); !ok {
		t.Fatal("a push of the whole limit after take was refused")
	}
}

// TestQueueReusesSpare: the array of a batch handed back is the next one
// filled, cleared of its deliveries, so that a stream that keeps up
// allocates nothing; the array of a large burst is not kept.
func TestQueueReusesSpare(t *testing.T) {
	q := queue{limit: 1 << 20}
	q.push(sized(1, 1))
	first := q.take()
	q.recycle(first)
	if first[0] != nil {
		t.Fatal("a recycled batch still holds its delivery")
	}
	q.push(sized(2, 1))
	q.recycle(q.take()) // filled a new array: the first was held back
	q.push(sized(3, 1))
	third := q.take()
	if &third[0] != &first[0] {
		t.Fatal("the recycled array was not filled again")
	}
	q.recycle(third)

	d := sized(4, 1)
	keepUp := func() {
		q.push(d)
		q.push(d)
		q.recycle(q.take())
	}
	keepUp() // both arrays grow to two deliveries
	keepUp()
	steady := testing.AllocsPerRun(100, keepUp)
	if steady != 0 {
		t.Fatalf("%v allocations a push and take, want none", steady)
	}

	burst := queue{limit: 1 << 20}
	for range maxSpare + 1 {
		burst.push(d)
	}
	burst.recycle(burst.take())
	if burst.spare != nil {
		t.Fatalf("kept an array of %d deliveries, more than maxSpare", cap(burst.spare))
	}
}

// TestQueueConcurrent: one goroutine pushes (as the hub does) while
// another takes and recycles (as a stream's writer does); every delivery
// arrives once, in order, and a batch never holds more than the limit.
// Run with -race.
func TestQueueConcurrent(t *testing.T) {
	const n, limit = 20000, 512
	q := queue{limit: limit}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(10 * time.Second)
		for seq := int64(1); seq <= n; {
			if ok, _ := q.push(sized(seq, int(seq%64))); ok {
				seq++
				continue
			}
			if time.Now().After(deadline) {
				t.Errorf("push %d refused for 10s: take does not give the bytes back", seq)
				return
			}
			runtime.Gosched() // full: the taker makes room
		}
	}()
	next := int64(1)
	for deadline := time.Now().Add(15 * time.Second); next <= n && time.Now().Before(deadline); {
		batch := q.take()
		bytes := 0
		for _, d := range batch {
			if d.change.Seq != next {
				t.Fatalf("got change %d, want %d", d.change.Seq, next)
			}
			next++
			bytes += d.size
		}
		if bytes > limit {
			t.Fatalf("a batch of %d bytes, limit %d", bytes, limit)
		}
		q.recycle(batch)
		if len(batch) == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	if next != n+1 {
		t.Fatalf("took %d deliveries, want %d", next-1, n)
	}
	if n, bytes := q.queued(); n != 0 || bytes != 0 {
		t.Fatalf("%d deliveries of %d bytes left", n, bytes)
	}
}

// TestQueueHeld: the consumer is called once, by the push or claim that
// finds the queue released, and not again until it releases the queue,
// which it cannot while deliveries wait.
func TestQueueHeld(t *testing.T) {
	q := queue{limit: 1 << 20}
	if _, wake := q.push(sized(1, 1)); !wake {
		t.Fatal("a push to a released queue did not call the consumer")
	}
	if _, wake := q.push(sized(2, 1)); wake {
		t.Fatal("a push to a held queue called the consumer again")
	}
	if q.claim() {
		t.Fatal("a claim of a held queue called the consumer again")
	}
	if q.release() {
		t.Fatal("released with deliveries waiting")
	}
	q.recycle(q.take())
	if !q.release() {
		t.Fatal("an empty queue was not released")
	}
	if !q.claim() {
		t.Fatal("a claim of a released queue did not call the consumer")
	}
	if _, wake := q.push(sized(3, 1)); wake {
		t.Fatal("a push to a claimed queue called the consumer again")
	}
	if _, wake := (&queue{limit: 0}).push(sized(4, 1)); wake {
		t.Fatal("a refused push called the consumer")
	}
}

// TestQueueConcurrentCalls: one goroutine pushes while a consumer that
// runs only when called (as the writer pool serves a stream) takes and
// releases; every delivery is taken, and the consumer is never called
// while it holds the queue. A wake-up lost between a release and a push
// would leave deliveries behind. Run with -race.
func TestQueueConcurrentCalls(t *testing.T) {
	const n = 20000
	q := queue{limit: 1 << 20}
	calls := make(chan struct{}, 2) // room for a call too many, to see it
	go func() {
		for seq := int64(1); seq <= n; seq++ {
			if _, wake := q.push(sized(seq, 1)); wake {
				calls <- struct{}{}
			}
			if seq%8 == 0 {
				runtime.Gosched()
			}
		}
	}()
	next := int64(1)
	for next <= n {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("not called for 10s with delivery %d of %d next", next, n)
		}
		for {
			batch := q.take()
			for _, d := range batch {
				if d.change.Seq != next {
					t.Fatalf("got change %d, want %d", d.change.Seq, next)
				}
				next++
			}
			q.recycle(batch)
			if len(calls) > 0 {
				t.Fatal("called while holding the queue")
			}
			if q.release() {
				break
			}
		}
	}
}
