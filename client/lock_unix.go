//go:build unix

package client

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes the profile lock, shared for readers, exclusive for writers,
// and returns its release. flock locks belong to the open file, so they
// also exclude other goroutines of this process that lock separately.
func (p *Profile) lock(shared bool) (func(), error) {
	return flock(p.path(lockFile), shared, true)
}

// tryListenLock takes the listen lock without waiting; [ErrListening] if
// another process holds it.
func (p *Profile) tryListenLock() (func(), error) {
	unlock, err := flock(p.path(listenLock), false, false)
	if err == syscall.EWOULDBLOCK {
		return nil, ErrListening
	}
	return unlock, err
}

func flock(name string, shared, wait bool) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("profile lock: %w", err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, err
		}
		return nil, fmt.Errorf("profile lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
