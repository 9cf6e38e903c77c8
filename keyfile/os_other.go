//go:build !unix

package keyfile

import "errors"

// openFlags: none outside Unix (Windows opens a named pipe without
// waiting for its other end).
const openFlags = 0

// noLinks reports whether err is a hard link refused by a file system
// without them.
func noLinks(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

// syncDir is a no-op: Windows cannot sync a directory handle, and NTFS
// journals the new name.
func syncDir(string) error { return nil }
