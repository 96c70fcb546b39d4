package mailbox_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

// TestOrderAndFolding: payloads arrive in order, and a run of wake-ups
// pushed while the handler is busy arrives as one.
func TestOrderAndFolding(t *testing.T) {
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	first := true
	m := mailbox.New(func(p []byte) {
		if first {
			first = false
			<-block // hold the handler while more is pushed
		}
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
	})
	defer m.Stop()
	m.Push([]byte("0"))
	time.Sleep(20 * time.Millisecond) // the handler holds "0"
	for i := 1; i <= 3; i++ {
		m.Push([]byte(strconv.Itoa(i)))
	}
	m.Push(nil)
	m.Push(nil)
	m.Push(nil)
	m.Push([]byte("4"))
	close(block)
	want := "0,1,2,3,,4"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		s := ""
		for i, g := range got {
			if i > 0 {
				s += ","
			}
			s += g
		}
		mu.Unlock()
		if s == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %q, want %q", s, want)
		}
	}
}

// TestStop: after Stop the handler is not called again.
func TestStop(t *testing.T) {
	calls := make(chan struct{}, 10)
	m := mailbox.New(func([]byte) { calls <- struct{}{} })
	m.Push([]byte("a"))
	<-calls
	m.Stop()
	m.Stop()
	m.Push([]byte("b"))
	select {
	case <-calls:
		t.Fatal("handler called after Stop")
	case <-time.After(50 * time.Millisecond):
	}
}
