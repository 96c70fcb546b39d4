//go:build !unix

package realtime

// peerClosed cannot look at a socket here: a detached stream learns that
// its client went when it next writes.
func peerClosed(fd uintptr, buf []byte) bool { return false }
