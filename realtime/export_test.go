package realtime

import "time"

// SetHangupInterval makes watchHangups of the hubs that start from now on
// look every d (at most MaxLifetime/10), until restore.
func SetHangupInterval(d time.Duration) (restore func()) {
	old := hangupInterval
	hangupInterval = d
	return func() { hangupInterval = old }
}

// For the black-box tests: whether a stream has ended, and why.
var (
	StreamEnded = (*Stream).ended
	StreamErr   = (*Stream).err
)
