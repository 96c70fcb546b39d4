//go:build !linux

package embedded

import "os"

// datasync is f.Sync where fdatasync(2) is not at hand.
func datasync(f *os.File) func() error { return f.Sync }
