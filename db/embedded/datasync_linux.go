package embedded

import (
	"errors"
	"os"
	"syscall"
)

// datasync makes what was written to f durable with fdatasync(2): the
// log's appends overwrite blocks that were written when it was created
// (walPrealloc), so only their data and whatever metadata reading them
// back needs (the file's size, were it to grow) must reach the disk, not
// the modification time, whose journal commit an fsync would wait for.
func datasync(f *os.File) func() error {
	rc, err := f.SyscallConn()
	if err != nil {
		return f.Sync
	}
	return func() error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for {
				if serr = syscall.Fdatasync(int(fd)); !errors.Is(serr, syscall.EINTR) {
					return
				}
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
		}
		return nil
	}
}
