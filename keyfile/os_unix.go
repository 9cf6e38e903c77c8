//go:build unix

package keyfile

import (
	"errors"
	"os"
	"syscall"
)

// openFlags: O_NONBLOCK, so that opening a FIFO (or a device that waits
// for a carrier) returns at once and Read refuses it as not regular
// instead of hanging in open(2). Reads of a regular file ignore it.
const openFlags = syscall.O_NONBLOCK

// noLinks reports whether err is a hard link refused by a file system
// without them (vfat, some FUSE and network file systems).
func noLinks(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP)
}

// syncDir makes a new name in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
