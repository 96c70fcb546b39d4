//go:build !linux

package realtime

// newSleeper returns a Go timer: other systems have no timerfd.
func newSleeper() sleeper { return newTimerSleeper() }
