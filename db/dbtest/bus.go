package dbtest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// BusFixture is a Bus under test, as the open func of RunBus returns it.
type BusFixture struct {
	// Bus is the Bus under test, ready: its Ready returns nil.
	Bus api.Bus
	// Peer, when not nil, is a second instance of the same backend, ready,
	// that shares Bus's topics: what either sends, the subscribers of both
	// receive. nil for a backend of a single instance; the cases then run
	// on Bus alone.
	Peer api.Bus
	// Disconnect, when not nil, cuts the connections of Bus and Peer, as a
	// network failure would; they must reconnect on their own. nil for a
	// Bus that has no connection to lose.
	Disconnect func(t *testing.T)
}

// instances returns Bus and, when there is one, Peer.
func (f BusFixture) instances() []api.Bus {
	if f.Peer == nil {
		return []api.Bus{f.Bus}
	}
	return []api.Bus{f.Bus, f.Peer}
}

// other returns the instance that sends to Bus's subscribers in cases that
// want another instance than theirs: Peer, or Bus when there is none.
func (f BusFixture) other() api.Bus {
	if f.Peer == nil {
		return f.Bus
	}
	return f.Peer
}

// busTest is one behaviour of the Bus, run on a fixture of its own.
type busTest struct {
	name string
	run  func(t *testing.T, f BusFixture)
}

// RunBus runs the conformance suite of api.Bus against the fixtures that
// open returns, each new (t.Cleanup closes it). Subtests run one after
// another; each uses topics of its own.
//
// A handler may be called with nil once its subscription is live (the
// Postgres Bus does so): the suite ignores the calls with nil before the
// first payload, and expects no other nil than those sent or those after a
// Disconnect.
func RunBus(t *testing.T, open func(t *testing.T) BusFixture) {
	tests := []busTest{
		{"Order", testBusOrder},
		{"Payloads", testBusPayloads},
		{"SenderKeepsBuffer", testBusSenderKeepsBuffer},
		{"ConcurrentSenders", testBusConcurrentSenders},
		{"LiveOnReturn", testBusLiveOnReturn},
		{"Cancel", testBusCancel},
		{"CancelDropsQueued", testBusCancelDropsQueued},
		{"CancelInHandler", testBusCancelInHandler},
		{"PayloadLimit", testBusPayloadLimit},
		{"NilAfterReconnect", testBusNilAfterReconnect},
		{"Ready", testBusReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
	}
}

// busWait bounds every wait for a call of a handler.
const busWait = 10 * time.Second

// busQuiet is how long the suite waits for a call that must not come.
const busQuiet = 100 * time.Millisecond

// inbox records the calls of one handler. It is safe for concurrent use.
type inbox struct {
	mu    sync.Mutex
	calls [][]byte
	more  chan struct{} // signalled after every call
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

// listen subscribes a new inbox to topic on b, until the test ends.
func listen(t *testing.T, b api.Bus, topic string) *inbox {
	in := newInbox()
	t.Cleanup(b.Subscribe(topic, in.fn))
	return in
}

func (in *inbox) fn(p []byte) {
	in.mu.Lock()
	in.calls = append(in.calls, p)
	in.mu.Unlock()
	select {
	case in.more <- struct{}{}:
	default:
	}
}

// got returns the calls so far, without the nils before the first
// payload (a subscription may be told with nil that it is live).
func (in *inbox) got() [][]byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	calls := in.calls
	for len(calls) > 0 && calls[0] == nil {
		calls = calls[1:]
	}
	return append([][]byte(nil), calls...)
}

// wait waits until done holds of the calls (as got returns them), and
// returns them; it stops the test after busWait.
func (in *inbox) wait(t *testing.T, what string, done func(calls [][]byte) bool) [][]byte {
	t.Helper()
	timeout := time.After(busWait)
	for {
		calls := in.got()
		if done(calls) {
			return calls
		}
		select {
		case <-in.more:
		case <-timeout:
			t.Fatalf("waited %s for %s; the handler got %s", busWait, what, show(calls))
		}
	}
}

// waitCalls waits for n calls, after the nils before the first payload.
func (in *inbox) waitCalls(t *testing.T, n int) [][]byte {
	t.Helper()
	return in.wait(t, fmt.Sprintf("%d calls", n), func(calls [][]byte) bool { return len(calls) >= n })
}

// want waits for n calls and checks that they are exactly want.
func (in *inbox) want(t *testing.T, want ...string) {
	t.Helper()
	wantCalls(t, in.waitCalls(t, len(want)), want...)
}

// wantNoMore checks, after busQuiet, that the calls are still exactly want.
func (in *inbox) wantNoMore(t *testing.T, want ...string) {
	t.Helper()
	time.Sleep(busQuiet)
	wantCalls(t, in.got(), want...)
}

func wantCalls(t *testing.T, calls [][]byte, want ...string) {
	t.Helper()
	if len(calls) != len(want) {
		t.Errorf("the handler got %s, want %q", show(calls), want)
		return
	}
	for i, p := range calls {
		if p == nil || string(p) != want[i] {
			t.Errorf("the handler got %s, want %q", show(calls), want)
			return
		}
	}
}

// show describes calls briefly: nil, or the payload (cut when long).
func show(calls [][]byte) string {
	parts := make([]string, len(calls))
	for i, p := range calls {
		switch {
		case p == nil:
			parts[i] = "nil"
		case len(p) > 20:
			parts[i] = fmt.Sprintf("%q... (%d bytes)", p[:20], len(p))
		default:
			parts[i] = fmt.Sprintf("%q", p)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// send sends payload on topic with b, and stops the test if it fails.
func send(t *testing.T, b api.Bus, topic string, payload []byte) {
	t.Helper()
	if err := b.Send(t.Context(), topic, payload); err != nil {
		t.Fatalf("Send(%q, %d bytes): %v", topic, len(payload), err)
	}
}

// sendAll sends each payload on topic with b, in order.
func sendAll(t *testing.T, b api.Bus, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		send(t, b, topic, []byte(p))
	}
}

// waitReady polls Ready on b until it reports ready (or, for false, not).
func waitReady(t *testing.T, b api.Bus, ready bool) {
	t.Helper()
	deadline := time.Now().Add(busWait)
	for {
		err := b.Ready(t.Context())
		if (err == nil) == ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready = %v after %s, want ready %v", err, busWait, ready)
		}
		time.Sleep(time.Millisecond)
	}
}

// Ready reports an instance of a fixture ready.
func testBusReady(t *testing.T, f BusFixture) {
	for i, b := range f.instances() {
		if err := b.Ready(t.Context()); err != nil {
			t.Errorf("instance %d: Ready: %v", i, err)
		}
	}
}

// bytesEqual says whether p and want are the same payload: both nil, or
// both not nil with the same bytes.
func bytesEqual(p, want []byte) bool {
	return (p == nil) == (want == nil) && bytes.Equal(p, want)
}
