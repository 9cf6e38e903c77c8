//go:build unix

package blob

import (
	"os"
	"syscall"
)

// tryLock takes an exclusive lock on f without waiting, released when f
// is closed. It reports false if another open file of the same file
// holds one, in this process or another.
func tryLock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch err {
		case nil:
			return true, nil
		case syscall.EWOULDBLOCK:
			return false, nil
		case syscall.EINTR:
			continue
		}
		return false, err
	}
}
