package blob_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/blob"
)

// TestAppender: writes of every alignment, after bytes the file already
// holds, land in order, whether direct or buffered, and a sync of the
// file makes them readable through it.
func TestAppender(t *testing.T) {
	path := filepath.Join(t.TempDir(), "part")
	head := bytes.Repeat([]byte{7}, 64<<10)
	if err := os.WriteFile(path, head, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := blob.NewAppender(f, int64(len(head)))
	r := rand.New(rand.NewPCG(1, 2))
	want := append([]byte(nil), head...)
	// Whole aligned buffers, then odd sizes that misalign the offset,
	// then aligned ones again (buffered from an unaligned offset on).
	for _, n := range []int{1 << 20, 1 << 20, 4096, 1000, 1 << 20, 3, 65536} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		if k, err := a.Write(p); err != nil || k != n {
			t.Fatalf("write of %d bytes: %d, %v", n, k, err)
		}
		want = append(want, p...)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes, not the %d written in order", len(got), len(want))
	}
}

// TestAppenderOtherFile: when f's name no longer names f (a file was put
// in its place), the Appender writes to f alone, never to the other.
func TestAppenderOtherFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "part")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Rename(path, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a := blob.NewAppender(f, 0)
	p := bytes.Repeat([]byte{1}, 1<<20)
	if _, err := a.Write(p); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the file put in place of f got bytes: %v, %v", fi.Size(), err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "moved")); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("f holds %d bytes, want %d: %v", len(got), len(p), err)
	}
}
