package server

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flusher and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines reach the writer by the next tick without a Close, and Close
// writes the rest at once.
func TestLineBuffer(t *testing.T) {
	var out syncBuffer
	b := newLineBuffer(&out)
	b.Write([]byte("one\n"))
	for deadline := time.Now().Add(5 * time.Second); out.String() != "one\n"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the writer holds %q, want the line written", out.String())
		}
	}
	b.Write([]byte("two\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "one\ntwo\n" {
		t.Errorf("after Close the writer holds %q, want both lines", got)
	}
}
