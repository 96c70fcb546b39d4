//go:build !(linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x))

package realtime

// newSleeper returns a Go timer: other systems have no timerfd (and on
// 32-bit Linux its itimerspec has 32-bit fields, which sleep does not write).
func newSleeper() sleeper { return newTimerSleeper() }
