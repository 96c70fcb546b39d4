package handlers

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// The limits answered here: RATE_LIMIT (token buckets per caller), and
// the Retry-After of a refused stream. The other limits refuse in the
// engine (realtime/slots.go). Every refusal by a limit is an *api.Error
// whose hidden cause is its realtime.Limit, so that one call in writeError
// can count refusals by limit: realtime.LimitOf(err).

// RateLimit is the configuration of the rate limiter.
type RateLimit struct {
	// PerSecond is RATE_LIMIT: requests per second of one caller, with
	// bursts up to twice that; 0 turns the limiter off.
	PerSecond float64
	// TrustProxy (TRUST_PROXY) takes an anonymous caller's address from
	// Fly-Client-IP or X-Forwarded-For, which only a proxy in front of
	// the server may set; otherwise from the connection.
	TrustProxy bool
	// MaxBuckets bounds the callers remembered at once (0: 100,000).
	MaxBuckets int
}

// defaultMaxBuckets bounds the bucket map: about 100 bytes a caller.
const defaultMaxBuckets = 100_000

// rateLimiter holds one token bucket per caller: a signed-in user, or an
// anonymous client address. A bucket that has filled up again is the same
// as a new one, so the sweep (at most once per refill time, when a new
// caller comes) forgets it: the map holds the callers seen within about
// two refill times (2 s at rates of 0.5/s and more), and never more than
// max of them. It is safe for concurrent use.
type rateLimiter struct {
	every      rate.Limit
	burst      int
	trustProxy bool
	max        int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	nextSweep time.Time
}

// newRateLimiter returns the limiter of c, or nil when it is off.
func newRateLimiter(c RateLimit) *rateLimiter {
	if c.PerSecond <= 0 {
		return nil
	}
	if c.MaxBuckets <= 0 {
		c.MaxBuckets = defaultMaxBuckets
	}
	return &rateLimiter{
		every:      rate.Limit(c.PerSecond),
		burst:      max(1, int(math.Ceil(2*c.PerSecond))),
		trustProxy: c.TrustProxy,
		max:        c.MaxBuckets,
		buckets:    make(map[string]*rate.Limiter),
	}
}

// refill is how long an empty bucket takes to fill up.
func (l *rateLimiter) refill() time.Duration {
	return time.Duration(float64(l.burst) / float64(l.every) * float64(time.Second))
}

// wait takes a token of key's bucket at now, or returns how long until
// one is there.
func (l *rateLimiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if !now.Before(l.nextSweep) || len(l.buckets) >= l.max {
			l.sweep(now)
		}
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep forgets the buckets that are full again; if the map is still at
// its bound (that many callers in one refill time), it forgets arbitrary
// ones until a tenth is free: those callers start again with a full burst,
// which only lets them through sooner. Called with mu held.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets { // map order is random
		if len(l.buckets) < l.max-l.max/10 {
			break
		}
		delete(l.buckets, k)
	}
	l.nextSweep = now.Add(max(l.refill(), time.Second))
}

// size returns how many callers the limiter remembers.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// limit refuses a caller's request past its rate with 429 RATE_LIMITED
// and Retry-After (whole seconds). It runs after authenticate: a signed-in
// user's requests share a bucket wherever they come from; an anonymous
// caller's, its client address's.
func (l *rateLimiter) limit(next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := "user:" + userFrom(r).ID
		if userFrom(r).ID == "" {
			key = "addr:" + clientAddr(r, l.trustProxy)
		}
		if d := l.wait(key, time.Now()); d > 0 {
			secs := max(1, int(math.Ceil(d.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, r, realtime.LimitRate.Refuse(api.Errorf(api.CodeRateLimited,
				"too many requests: at most %v a second, in bursts of %d; try again in %d s", float64(l.every), l.burst, secs)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the address a caller's requests count against: the
// connection's peer; behind a trusted proxy (TRUST_PROXY), Fly-Client-IP,
// else the last address of X-Forwarded-For (the one the proxy in front
// added: those before it are whatever the client sent). An IPv6 address
// counts by its /64, which one client usually holds whole.
// A header that does not hold an address is ignored.
func clientAddr(r *http.Request, trustProxy bool) string {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if trustProxy {
		forwarded := r.Header.Get("Fly-Client-IP")
		if forwarded == "" {
			if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
				forwarded = xff[len(xff)-1]
				if i := strings.LastIndexByte(forwarded, ','); i >= 0 {
					forwarded = forwarded[i+1:]
				}
			}
		}
		if fip, ferr := netip.ParseAddr(strings.TrimSpace(forwarded)); ferr == nil {
			ip, err = fip, nil
		}
	}
	if err != nil {
		return addr // not an IP address: a test's, or a Unix socket's
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// refusalHeaders adds to the answer of a refused request what its limit
// says: a stream refused by MAX_STREAMS (503) gets Retry-After, so that a
// load balancer or client tries again, elsewhere.
func refusalHeaders(w http.ResponseWriter, err error) {
	if l, ok := realtime.LimitOf(err); ok && l == realtime.LimitStreams {
		w.Header().Set("Retry-After", "1")
	}
}
