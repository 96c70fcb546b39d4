package auth

import (
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Tokens verified recently are remembered, so that a client that sends
// the same token with every request pays for its signature once a minute
// rather than every time (an HS256 check costs microseconds, an RS256 one
// tens of them). A token is immutable: the same string verifies the same
// way until it expires, or until its key leaves the key set, which the
// minute bounds. Revocation is checked after Verify, on every request.

const (
	// cacheFor is how long a verified token is taken on trust.
	cacheFor = time.Minute
	// cacheSize bounds the tokens remembered; past it the cache starts over.
	cacheSize = 10_000
)

type verified struct {
	user  api.User
	exp   time.Time // the token's
	until time.Time // when the entry goes: cacheFor after the check, at most exp
}

type tokenCache struct {
	mu sync.RWMutex
	m  map[string]verified
}

// get returns the user of a token verified lately and still valid at now.
func (c *tokenCache) get(token string, now time.Time) (verified, bool) {
	c.mu.RLock()
	e, ok := c.m[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return verified{}, false
	}
	return e, true
}

// put remembers a token just verified at now.
func (c *tokenCache) put(token string, user api.User, exp, now time.Time) {
	e := verified{user: user, exp: exp, until: now.Add(cacheFor)}
	if exp.Before(e.until) {
		e.until = exp
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cacheSize {
		c.m = make(map[string]verified)
	}
	c.m[token] = e
	c.mu.Unlock()
}
