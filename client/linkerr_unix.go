//go:build unix

package client

import (
	"errors"
	"syscall"
)

// linkUnsupported reports whether err, from link(2), means the file
// system makes no hard links: Linux answers EPERM on vfat and exFAT. (It
// also answers EPERM in an immutable directory, where the exclusive
// create that follows fails the same way, and for a directory or a file
// of another user, which a partial file is not.)
func linkUnsupported(err error) bool { return errors.Is(err, syscall.EPERM) }
