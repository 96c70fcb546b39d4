//go:build unix

package realtime

import (
	"errors"
	"syscall"
)

// peerClosed reads from the socket fd without waiting (Go's sockets are
// non-blocking) and reports whether the peer closed or reset it: a read
// of 0 bytes is the end of the stream, EAGAIN a live peer with nothing
// to say, bytes read a live peer, an error such as ECONNRESET a dead one.
func peerClosed(fd uintptr, buf []byte) bool {
	n, err := syscall.Read(int(fd), buf)
	switch {
	case err == nil:
		return n == 0
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		return false
	default:
		return true
	}
}
