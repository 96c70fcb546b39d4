//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package realtime

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// timerfd is a kernel timer read through Go's poller: it wakes a waiting
// goroutine within some microseconds of its time even when the whole
// process idles, where Go's timers, waiting in the poller with a
// millisecond timeout, wake up to a millisecond or two late.
type timerfd struct {
	f  *os.File
	rc syscall.RawConn // sets the timer on f's descriptor while f holds it (f.Fd would make it blocking)
}

// newSleeper returns a timerfd, or a Go timer where the kernel has none.
func newSleeper() sleeper {
	const clockMonotonic = 1
	fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return newTimerSleeper()
	}
	f := os.NewFile(fd, "timerfd") // non-blocking: Go's poller waits for it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newTimerSleeper()
	}
	return timerfd{f: f, rc: rc}
}

// sleep waits for d, or until Close.
func (t timerfd) sleep(d time.Duration) error {
	spec := [4]int64{0, 0, int64(d / time.Second), int64(d % time.Second)} // no interval; one expiry after d
	var errno syscall.Errno
	if err := t.rc.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	}); err != nil {
		return err // closed
	}
	if errno != 0 {
		return errno
	}
	var expirations [8]byte
	_, err := t.f.Read(expirations[:])
	return err
}

func (t timerfd) Close() error { return t.f.Close() }
