package blob

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident returns how many pages of f's first size bytes are in the
// page cache.
func resident(t *testing.T, f *os.File, size int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestSyncerDropCache: with DropCache, the bytes a sync made durable
// leave the page cache; without, they stay.
func TestSyncerDropCache(t *testing.T) {
	const size = 4 << 20
	for _, drop := range []bool{false, true} {
		f, err := os.Create(filepath.Join(t.TempDir(), "part"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s := NewSyncer(f, 0, 1<<20, func(int64) error { return nil })
		if drop {
			s.DropCache()
		}
		buf := make([]byte, 256<<10)
		for off := 0; off < size; off += len(buf) {
			if _, err := f.Write(buf); err != nil {
				t.Fatal(err)
			}
			if err := s.Wrote(int64(off + len(buf))); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		pages := size / os.Getpagesize()
		got := resident(t, f, size)
		if drop && got > pages/4 {
			t.Errorf("DropCache: %d of %d pages still cached", got, pages)
		}
		if !drop && got < pages*3/4 {
			// A filesystem that does not cache (or memory pressure):
			// nothing to compare with.
			t.Skipf("without DropCache only %d of %d pages cached", got, pages)
		}
	}
}
