package realtime

import (
	"errors"

	"github.com/switchboard-dev/switchboard/api"
)

// errRevoked ends the streams opened with a token that was revoked. They
// end as at their token's expiry: the client comes back, and its
// reconnect with the revoked token is refused with 401.
var errRevoked = errors.New("stream ended: its token was revoked")

// jtiOf returns the id (jti claim) of the token a user came with, or ""
// when it has none (or one that is not a string): such a token cannot be
// revoked.
func jtiOf(u api.User) string {
	jti, _ := u.Claims["jti"].(string)
	return jti
}

// endRevoked ends every open stream of this instance whose token has the
// id jti. Revocations calls it on learning a revocation, after putting it
// in the set: a stream registered later is ended by register itself (see
// revokedAtRegister), so none slips between the two.
func (h *Hub) endRevoked(jti string) int {
	n := 0
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range h.streams {
		if jtiOf(s.User) == jti {
			s.end(errRevoked)
			n++
		}
	}
	return n
}

// revokedAtRegister ends s if its token is already revoked, when register
// adds it to the hub (under h.mu): a stream opened just before its token
// was revoked and registered after the revocation's endRevoked ran.
func (h *Hub) revokedAtRegister(s *Stream) {
	if r := h.revocations.Load(); r != nil {
		if jti := jtiOf(s.User); jti != "" && r.Revoked(jti) {
			s.end(errRevoked)
		}
	}
}
