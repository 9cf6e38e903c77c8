package blob

import (
	"errors"
	"os"
	"syscall"
)

// openDirect opens path for direct writes, not following a symbolic
// link, and without blocking on a FIFO.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

func isInvalid(err error) bool { return errors.Is(err, syscall.EINVAL) }
