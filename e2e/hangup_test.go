package e2e

import (
	"slices"
	"testing"
	"time"
)

// TestHangupPresence: with heartbeats an hour apart, closing a user's only
// stream makes them offline for a presence=* watcher within LEAVE_GRACE
// and about two seconds: the server notices the closed connection of a
// detached stream without writing to it. Another user's stream stays.
func TestHangupPresence(t *testing.T) {
	const grace = 500 * time.Millisecond
	srv := startServer(t, map[string]string{
		"AUTH_MODE": "token", "JWT_SECRET": authSecret, "LEAVE_GRACE": grace.String(), "HEARTBEAT_INTERVAL": "1h",
	})
	token := "&access_token=" + signToken(t, "watcher", time.Hour)
	c := openSSE(t, srv.URL+"/stream?presence=*"+token, "")
	c.Expect(t, "ready")
	w := &presenceWatcher{c: c, online: map[string]bool{}}
	alice, _ := tab(t, srv.URL, "alice"), tab(t, srv.URL, "bob")
	w.until(t, "alice", "bob", "watcher")

	start := time.Now()
	alice.Close()
	deadline := grace + 2500*time.Millisecond
	for !slices.Equal(sortedKeys(w.online), []string{"bob", "watcher"}) {
		left := deadline - time.Since(start)
		if left <= 0 {
			t.Fatalf("%v after alice closed her only stream, the watcher knows %q online", deadline, sortedKeys(w.online))
		}
		w.next(t, left)
	}
	t.Logf("alice offline %v after she closed her stream (LEAVE_GRACE %v)", time.Since(start).Round(time.Millisecond), grace)
}
