//go:build unix

package handlers

import (
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/switchboard-dev/switchboard/realtime"
)

// leanConn returns the socket of a detached stream as an *os.File on a
// duplicate of its descriptor, and closes c. A *net.TCPConn keeps its two
// addresses and their byte slices for as long as it is open, about 300
// bytes of an idle stream's 1,200 that the stream never reads; the file
// writes, waits for the socket and takes a write deadline as the
// connection did (through the same poller), and its descriptor is what
// the hangup watch reads. Anything other than a TCP connection, or a
// duplicate that fails, is returned as it is.
func leanConn(c net.Conn) realtime.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	dup := -1
	err = rc.Control(func(fd uintptr) {
		// Close-on-exec at once (no child inherits it), and never 0-2: os
		// takes a file on 1 or 2 for stdout or stderr, and a write to a
		// reset peer there would raise SIGPIPE and stop the server.
		if n, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3); err == nil {
			dup = n
		}
	})
	if err != nil || dup < 0 {
		return c
	}
	// The duplicate shares the socket's non-blocking flag: NewFile puts it
	// in the poller.
	f := os.NewFile(uintptr(dup), "stream")
	tc.Close() // the socket stays open through f
	return f
}
