//go:build unix

package client

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// links returns the number of hard links of the file fi describes.
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// owned reports whether the file fi describes belongs to the effective
// user.
func owned(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// ownPrivate returns an error wrapping errForeignPart unless the file fi
// describes belongs to the effective user and no one else may write it.
// Others reading it is left alone: the finished file keeps the partial
// file's mode, and file systems such as exFAT or vfat give every file
// the same mode, readable by all (which would otherwise make every
// interrupted download there start over).
func ownPrivate(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: its owner cannot be read", errForeignPart)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: owned by uid %d, not by you (uid %d)", errForeignPart, st.Uid, os.Geteuid())
	}
	if p := fi.Mode().Perm(); p&0o022 != 0 {
		return fmt.Errorf("%w: mode %04o lets others write it", errForeignPart, p)
	}
	return nil
}

// openNoFollow opens path for reading and writing, unless it is a
// symbolic link.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
}
