package auth

import (
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// TestTokenCache: an entry lasts cacheFor, never past the token's expiry
// and the cache stays bounded.
func TestTokenCache(t *testing.T) {
	var c tokenCache
	now := time.Now()
	c.put("far", api.User{ID: "alice"}, now.Add(time.Hour), now)
	c.put("near", api.User{ID: "bob"}, now.Add(10*time.Second), now)
	for _, tc := range []struct {
		token string
		at    time.Duration
		hit   bool
	}{
		{"far", 0, true},
		{"far", cacheFor - time.Second, true},
		{"far", cacheFor, false},
		{"near", 10*time.Second - time.Millisecond, true},
		{"near", 10 * time.Second, false},
		{"unknown", 0, false},
	} {
		e, ok := c.get(tc.token, now.Add(tc.at))
		if ok != tc.hit || (ok && e.user.ID == "") {
			t.Errorf("%s after %v: hit %v (%+v), want %v", tc.token, tc.at, ok, e, tc.hit)
		}
	}
	for i := range cacheSize + 10 {
		c.put(strconv.Itoa(i), api.User{ID: "u"}, now.Add(time.Hour), now)
	}
	if n := len(c.m); n > cacheSize {
		t.Errorf("%d entries, bound %d", n, cacheSize)
	}
}
