//go:build !unix

package client

import (
	"errors"
	"io/fs"
	"os"
)

// links returns 1: the number of hard links is not read on this system.
func links(fs.FileInfo) uint64 { return 1 }

// owned reports true: the owner of a file is not read on this system.
func owned(fs.FileInfo) bool { return true }

// openNoFollow opens path for reading and writing, unless it is a
// symbolic link (checked before opening).
func openNoFollow(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err != nil {
		return nil, err
	} else if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errors.New("partial file is a symbolic link")
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}
