//go:build unix

package keyfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez/keyfile"
)

// TestReadFIFO: a named pipe in place of a key file is refused with
// ErrNotRegular; opening it must not wait for a writer (kez-chat and
// kez-relay would hang at start).
func TestReadFIFO(t *testing.T) {
	name := filepath.Join(t.TempDir(), "key")
	if err := syscall.Mkfifo(name, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := keyfile.Read(name, 64)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, keyfile.ErrNotRegular) {
			t.Errorf("Read(FIFO) = %v, want ErrNotRegular", err)
		}
	case <-time.After(10 * time.Second):
		// Unblock the open, so that the goroutine ends.
		if f, err := openWriter(name); err == nil {
			f.Close()
		}
		t.Fatal("Read(FIFO) still blocked after 10 s")
	}
}

func openWriter(name string) (interface{ Close() error }, error) {
	return os.OpenFile(name, os.O_WRONLY|syscall.O_NONBLOCK, 0)
}
