package realtime

import "errors"

// errRevoked ends the streams opened with a token that was revoked. They
// end as at their token's expiry: the client comes back, and its
// reconnect with the revoked token is refused with 401.
var errRevoked = errors.New("stream ended: its token was revoked")

// endRevoked ends every open stream of this instance whose token has the
// id jti. Revocations calls it on learning a revocation, after putting it
// in the set: a stream registered later is ended by register itself (see
// revokedAtRegister), so none slips between the two.
func (h *Hub) endRevoked(jti string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range h.streams {
		if s.User.TokenID == jti {
			s.end(errRevoked)
		}
	}
}

// revokedAtRegister ends s if its token is already revoked, when register
// adds it to the hub (under h.mu): a stream opened just before its token
// was revoked and registered after the revocation's endRevoked ran.
func (h *Hub) revokedAtRegister(s *Stream) {
	if r := h.revocations.Load(); r != nil {
		if jti := s.User.TokenID; jti != "" && r.Revoked(jti) {
			s.end(errRevoked)
		}
	}
}
