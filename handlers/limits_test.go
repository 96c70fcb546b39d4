package handlers

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestRateLimiterBuckets: a caller gets its burst (twice the rate), then
// waits for the next token; callers do not share buckets.
func TestRateLimiterBuckets(t *testing.T) {
	l := newRateLimiter(RateLimit{PerSecond: 2})
	now := time.Now()
	for i := range 4 {
		if d := l.wait("a", now); d != 0 {
			t.Fatalf("request %d of the burst of 4: wait %v", i+1, d)
		}
	}
	if d := l.wait("a", now); d <= 0 || d > 500*time.Millisecond {
		t.Fatalf("past the burst: wait %v, want (0, 500ms]", d)
	}
	if d := l.wait("b", now); d != 0 {
		t.Fatalf("another caller: wait %v", d)
	}
	if d := l.wait("a", now.Add(500*time.Millisecond)); d != 0 {
		t.Fatalf("a token later: wait %v", d)
	}
	if newRateLimiter(RateLimit{}) != nil {
		t.Fatal("RATE_LIMIT=0 made a limiter")
	}
	if l := newRateLimiter(RateLimit{PerSecond: 0.2}); l.burst != 1 {
		t.Fatalf("RATE_LIMIT=0.2: burst %d, want 1", l.burst)
	}
}

// TestRateLimiterMemoryBound: however many callers come (a flood of
// addresses), the limiter remembers at most MaxBuckets of them; once
// their buckets have filled up again (and a full bucket is the same as a
// new one) they are all forgotten.
func TestRateLimiterMemoryBound(t *testing.T) {
	const bound = 1000
	l := newRateLimiter(RateLimit{PerSecond: 1, MaxBuckets: bound})
	now := time.Now()
	l.wait("limited", now)
	l.wait("limited", now)
	if d := l.wait("limited", now); d <= 0 {
		t.Fatal("a caller past its burst was let through")
	}
	for i := range 50 * bound {
		l.wait("flood-"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Microsecond))
		if n := l.size(); n > bound {
			t.Fatalf("after %d callers the limiter remembers %d, more than %d", i+1, n, bound)
		}
	}
	// Two seconds on, every bucket is full again: the next new caller's
	// sweep forgets them all.
	later := now.Add(50*bound*time.Microsecond + l.refill() + time.Millisecond)
	l.wait("late", later)
	if n := l.size(); n != 1 {
		t.Fatalf("after every bucket filled up: %d remembered, want 1", n)
	}

}

// TestClientAddr: the address an anonymous caller counts against, with
// and without TRUST_PROXY.
func TestClientAddr(t *testing.T) {
	for _, c := range []struct {
		remote  string
		headers map[string]string
		trust   bool
		want    string
	}{
		{"192.0.2.1:5000", nil, false, "192.0.2.1"},
		{"192.0.2.1:5000", map[string]string{"Fly-Client-IP": "203.0.113.9"}, false, "192.0.2.1"},
		{"192.0.2.1:5000", map[string]string{"X-Forwarded-For": "203.0.113.9"}, false, "192.0.2.1"},
		{"192.0.2.1:5000", map[string]string{"Fly-Client-IP": "203.0.113.9"}, true, "203.0.113.9"},
		{"192.0.2.1:5000", map[string]string{"Fly-Client-IP": "203.0.113.9", "X-Forwarded-For": "198.51.100.7"}, true, "203.0.113.9"},
		{"192.0.2.1:5000", map[string]string{"X-Forwarded-For": "10.9.9.9, 198.51.100.7"}, true, "198.51.100.7"},
		{"192.0.2.1:5000", map[string]string{"X-Forwarded-For": "not an address"}, true, "192.0.2.1"},
		{"192.0.2.1:5000", map[string]string{"Fly-Client-IP": "2001:db8:1:2:3:4:5:6"}, true, "2001:db8:1:2::/64"},
		{"[2001:db8:aa:bb:1::9]:5000", nil, false, "2001:db8:aa:bb::/64"},
		{"[::ffff:192.0.2.3]:5000", nil, false, "192.0.2.3"},
		{"192.0.2.1:5000", nil, true, "192.0.2.1"},
	} {
		r := httptest.NewRequest("GET", "/records/x", nil)
		r.RemoteAddr = c.remote
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		if got := clientAddr(r, c.trust); got != c.want {
			t.Errorf("%s %v trust=%v: %q, want %q", c.remote, c.headers, c.trust, got, c.want)
		}
	}
}
