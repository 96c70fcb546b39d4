package dbtest

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// Every payload of a topic arrives, in send order, at every subscriber of
// the topic on every instance, and at no subscriber of another topic.
func testBusOrder(t *testing.T, f BusFixture) {
	var subs, others []*inbox
	for _, b := range f.instances() {
		subs = append(subs, listen(t, b, "order"), listen(t, b, "order"))
		others = append(others, listen(t, b, "order-other"), listen(t, b, "orde"))
	}
	want := make([]string, 100)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	sendAll(t, f.Bus, "order", want...)
	for _, in := range subs {
		in.want(t, want...)
	}
	// A payload of "order" that reached another topic's subscriber would
	// be there before these, sent after.
	sendAll(t, f.Bus, "order-other", "marker")
	sendAll(t, f.Bus, "orde", "marker")
	for _, in := range others {
		in.want(t, "marker")
	}
}

// Payloads arrive as they were sent, on every instance: nil stays a
// wake-up, empty stays empty, and text up to the limit and binary payloads
// under 5,000 bytes arrive intact, in order.
func testBusPayloads(t *testing.T, f BusFixture) {
	var subs []*inbox
	for _, b := range f.instances() {
		subs = append(subs, listen(t, b, "streams"))
	}
	payloads := [][]byte{
		[]byte(`{"stream":"s1"}`),
		nil,
		{},
		[]byte(strings.Repeat("x", 6999)),
		bytes.Repeat([]byte{0, 0xff, 'a'}, 1000),
		bytes.Repeat([]byte{0xff}, 4999),
		[]byte("é\u2028"),
	}
	for _, p := range payloads {
		send(t, f.Bus, "streams", p)
	}
	for i, in := range subs {
		got := in.waitCalls(t, len(payloads))
		for j, want := range payloads {
			if p := got[j]; !bytesEqual(p, want) {
				t.Errorf("instance %d, payload %d: got %d bytes (nil %v), want %d bytes (nil %v)",
					i, j, len(p), p == nil, len(want), want == nil)
			}
		}
	}
}

// Send does not keep the payload: the sender may reuse its buffer once
// Send returns.
func testBusSenderKeepsBuffer(t *testing.T, f BusFixture) {
	in := listen(t, f.Bus, "buffer")
	buf := []byte("before")
	send(t, f.Bus, "buffer", buf)
	copy(buf, "after!")
	in.want(t, "before")
}

// Payloads sent at once from many goroutines, on every instance, all
// arrive once at every subscriber, each sender's in its order.
func testBusConcurrentSenders(t *testing.T, f BusFixture) {
	const senders, each = 8, 50
	var subs []*inbox
	for _, b := range f.instances() {
		subs = append(subs, listen(t, b, "many"))
	}
	var wg sync.WaitGroup
	for g := range senders {
		b := f.instances()[g%len(f.instances())]
		wg.Go(func() {
			for i := range each {
				if err := b.Send(t.Context(), "many", []byte(strconv.Itoa(g)+":"+strconv.Itoa(i))); err != nil {
					t.Errorf("sender %d: Send: %v", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for k, in := range subs {
		calls := in.waitCalls(t, senders*each)
		next := make([]int, senders) // the next payload expected of each sender
		for _, p := range calls {
			g, i, ok := parseSenderPayload(p, senders)
			if !ok || i != next[g] {
				t.Fatalf("subscriber %d: got %s after %v of each sender, want each sender's payloads in order, once",
					k, show([][]byte{p}), next)
			}
			next[g]++
		}
	}
}

// parseSenderPayload reads "g:i", g under senders.
func parseSenderPayload(p []byte, senders int) (g, i int, ok bool) {
	a, b, found := strings.Cut(string(p), ":")
	g, err1 := strconv.Atoi(a)
	i, err2 := strconv.Atoi(b)
	if p == nil || !found || err1 != nil || err2 != nil || g < 0 || g >= senders {
		return 0, 0, false
	}
	return g, i, true
}

// A subscription is live when Subscribe returns: a payload sent right
// after it, from another instance, arrives.
func testBusLiveOnReturn(t *testing.T, f BusFixture) {
	for i := range 5 {
		topic := "live-" + strconv.Itoa(i)
		in := listen(t, f.Bus, topic)
		send(t, f.other(), topic, []byte("hello"))
		in.want(t, "hello")
	}
}

// Send refuses a payload of 7,000 bytes or more with PAYLOAD_TOO_LARGE,
// and sends nothing.
func testBusPayloadLimit(t *testing.T, f BusFixture) {
	var subs []*inbox
	for _, b := range f.instances() {
		subs = append(subs, listen(t, b, "big"))
	}
	for _, n := range []int{7000, 8000, 100_000} {
		err := f.Bus.Send(t.Context(), "big", []byte(strings.Repeat("x", n)))
		if err == nil {
			t.Fatalf("Send of %d bytes succeeded, want PAYLOAD_TOO_LARGE", n)
		}
		wantError(t, err, api.CodePayloadTooLarge)
	}
	send(t, f.Bus, "big", []byte("after"))
	for _, in := range subs {
		in.want(t, "after")
	}
}
