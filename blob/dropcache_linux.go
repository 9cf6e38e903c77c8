package blob

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache evicts the n bytes of f from off on from the page cache; they
// must be synced (dirty pages stay). It is a hint: errors are ignored.
func dropCache(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, n, unix.FADV_DONTNEED) })
}
