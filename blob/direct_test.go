package blob

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// TestDirectWriter writes a file through a directWriter in pieces that
// are aligned, unaligned in offset, in memory and in length, out of
// order, and checks the file holds exactly the bytes written.
func TestDirectWriter(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newDirectWriter(f)
	defer w.Close()
	want := randBytes(5*dioAlign*16 + 123)
	buf := alignedBuffer(len(want) + dioAlign)
	if uintptr(unsafe.Pointer(&buf[0]))%dioAlign != 0 || len(buf) != len(want)+dioAlign {
		t.Fatal("alignedBuffer is not aligned")
	}
	copy(buf, want)
	pieces := []struct{ off, n int }{
		{4 * dioAlign * 16, len(want) - 4*dioAlign*16}, // aligned, ragged tail
		{0, dioAlign * 16},                     // aligned, whole
		{dioAlign * 16, 100},                   // aligned, short
		{dioAlign*16 + 100, dioAlign*16 - 100}, // unaligned offset
		{2 * dioAlign * 16, 2 * dioAlign * 16}, // aligned
	}
	for _, p := range pieces {
		if n, err := w.WriteAt(buf[p.off:p.off+p.n], int64(p.off)); err != nil || n != p.n {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", p.n, p.off, n, err)
		}
	}
	// Memory that is not aligned.
	if n, err := w.WriteAt(append([]byte{0}, want[:dioAlign]...)[1:], 0); err != nil || n != dioAlign {
		t.Fatalf("unaligned memory: %d, %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes (%v), equal %v", len(got), err, bytes.Equal(got, want))
	}
	// Direct writes refused: buffered from then on.
	w.off.Store(true)
	if n, err := w.WriteAt(buf[:dioAlign], 0); err != nil || n != dioAlign {
		t.Fatalf("after a refusal: %d, %v", n, err)
	}
}
