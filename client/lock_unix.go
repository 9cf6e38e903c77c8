//go:build unix

package client

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lock takes the profile lock, shared for readers, exclusive for writers,
// and returns its release. flock locks belong to the open file, so they
// also exclude other goroutines of this process that lock separately.
// A writer creates the profile directory; a reader of one that does not
// exist has nothing to read, and nothing to lock.
func (p *Profile) lock(shared bool) (func(), error) {
	if shared && !p.exists() {
		return func() {}, nil
	}
	if !shared {
		if err := p.mkdir(); err != nil {
			return nil, err
		}
	}
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
	if err = flockFile(f, how); err != nil {
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

// flockFile locks f (how: syscall.LOCK_*), again when a signal interrupts
// the call.
func flockFile(f *os.File, how int) error {
	for {
		if err := syscall.Flock(int(f.Fd()), how); err != syscall.EINTR {
			return err
		}
	}
}

// lockDownload takes the lock of a download in progress, the file name,
// without waiting, and returns its release, which removes the file. It
// returns an error wrapping [ErrFetchRunning], with the holder's process
// ID if it wrote one, while another process (or another lock in this
// one) holds it.
func lockDownload(name string) (func(), error) {
	for {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("download lock: %w", err)
		}
		err = flockFile(f, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == syscall.EWOULDBLOCK {
			pid := "pid unknown"
			b := make([]byte, 20)
			n, _ := f.ReadAt(b, 0)
			if v, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && v > 0 {
				pid = "pid " + strconv.Itoa(v)
			}
			f.Close()
			return nil, fmt.Errorf("%w (%s)", ErrFetchRunning, pid)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("download lock: %w", err)
		}
		// The holder before us removes the name as it releases the lock:
		// a lock taken on a file no longer (or not yet again) at name
		// excludes no one, so take it again.
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("download lock: %w", err)
		}
		if now, err := os.Stat(name); err != nil || !os.SameFile(held, now) {
			f.Close()
			continue
		}
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return func() {
			os.Remove(name)
			f.Close()
		}, nil
	}
}
