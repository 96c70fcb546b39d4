package handlers

import (
	"crypto/rand"
	"encoding/base32"
	"net/http"
)

// RequestIDHeader carries a request's id: taken from the request when it
// is sane (see saneRequestID), else made up, and always sent back.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds an incoming request id: a longer one is replaced.
const maxRequestID = 128

// requestID returns the id of r: its X-Request-Id when sane, so that a
// proxy's or a client's id follows the request through the logs, or a
// new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get(RequestIDHeader); saneRequestID(id) {
		return id
	}
	return newRequestID()
}

// saneRequestID reports whether id may be logged and echoed as it came:
// 1 to maxRequestID bytes of letters, digits and - _ . : / + = @, which
// covers UUIDs, hex and base64 ids and Cloud Run's trace context, and
// nothing that could forge a log line or a header.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=' || c == '@':
		default:
			return false
		}
	}
	return true
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newRequestID returns 80 random bits as 16 lowercase base32 characters.
func newRequestID() string {
	var b [10]byte
	var id [16]byte
	rand.Read(b[:])
	idEncoding.Encode(id[:], b[:])
	for i, c := range id {
		if 'A' <= c && c <= 'Z' {
			id[i] = c + ('a' - 'A')
		}
	}
	return string(id[:])
}
