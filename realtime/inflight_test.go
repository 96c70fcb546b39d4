package realtime

import (
	"sync"
	"testing"
	"time"
)

// TestInflight: work may begin while someone waits for none (as streams
// that WaitStreams gave up on still end and touch), and idle closes once
// none is under way, not before.
func TestInflight(t *testing.T) {
	var p inflight
	select {
	case <-p.idle():
	default:
		t.Fatal("idle is not closed with nothing under way")
	}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() { // waiters and workers at once
			defer wg.Done()
			idle := p.idle()
			p.add()
			go func() { <-release; p.done() }()
			<-idle
		}()
	}
	idle := func() bool {
		select {
		case <-p.idle():
			return true
		default:
			return false
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		n := p.n
		p.mu.Unlock()
		if n == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 50 under way", n)
		}
	}
	if idle() {
		t.Fatal("idle is closed with work under way")
	}
	close(release)
	wg.Wait()
	select {
	case <-p.idle():
	case <-time.After(5 * time.Second):
		t.Fatal("idle did not close once the work was done")
	}
}
