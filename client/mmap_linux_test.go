package client

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez/filecrypt"
)

// TestMappedFile checks that a Sealer reading a file through its
// mappings gives the stream it gives reading it, and that a file that
// shrinks under its mappings fails with ErrSourceChanged, from the fault
// the Sealer catches, rather than crashing the process.
func TestMappedFile(t *testing.T) {
	const seg = 4 << 20
	path := filepath.Join(t.TempDir(), "file")
	data := make([]byte, 3*seg+12345)
	rand.NewChaCha8([32]byte{3}).Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, _ := filecrypt.NewKey(nil)
	salt := bytes.Repeat([]byte{9}, filecrypt.SaltSize)
	size := int64(len(data))
	src := shareSource(f)
	if _, ok := src.(filecrypt.Viewer); !ok {
		t.Fatal("the share source of a file is not a Viewer")
	}
	mapped, _ := filecrypt.NewSealer(src, size, k, bytes.NewReader(salt))
	plain, _ := filecrypt.NewSealer(f, size, k, bytes.NewReader(salt))
	want, err := io.ReadAll(io.NewSectionReader(plain, 0, plain.Size()))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	for off := 0; off < len(got); off += seg {
		end := min(off+seg, len(got))
		if _, err := mapped.ReadAt(got[off:end], int64(off)); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the stream sealed from mappings differs from the one sealed from reads")
	}

	// Shrunk between two ranges: the second faults.
	if _, err := mapped.ReadAt(got[:seg], 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, seg); err != nil {
		t.Fatal(err)
	}
	_, err = mapped.ReadAt(got[:seg], 2*seg)
	if !errors.Is(err, filecrypt.ErrSourceChanged) {
		t.Fatalf("file shrunk under its mapping: %v, want ErrSourceChanged", err)
	}
	if !strings.Contains(err.Error(), "mapped") {
		t.Errorf("file shrunk under its mapping: %v, want the error of a fault", err)
	}
	// Still usable after the fault: the first range maps and seals.
	if _, err := mapped.ReadAt(got[:seg], 0); err != nil {
		t.Fatalf("after a fault: %v", err)
	}
	if !bytes.Equal(got[:seg], want[:seg]) {
		t.Error("after a fault: the first range differs")
	}
}
