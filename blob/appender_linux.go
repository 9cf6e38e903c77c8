package blob

import (
	"os"
	"syscall"
)

// openDirectNoFollow opens path for direct writes, not following a
// symbolic link, and without blocking on a FIFO.
func openDirectNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
