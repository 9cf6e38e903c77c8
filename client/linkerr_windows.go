//go:build windows

package client

import (
	"errors"
	"syscall"
)

// errInvalidFunction is Windows' ERROR_INVALID_FUNCTION ("Incorrect
// function"), which CreateHardLink returns on FAT and exFAT volumes.
const errInvalidFunction = syscall.Errno(1)

// linkUnsupported reports whether err, from CreateHardLink, means the
// volume makes no hard links.
func linkUnsupported(err error) bool { return errors.Is(err, errInvalidFunction) }
