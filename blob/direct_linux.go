package blob

import (
	"errors"
	"os"
	"syscall"
)

func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
}

func isInvalid(err error) bool { return errors.Is(err, syscall.EINVAL) }
