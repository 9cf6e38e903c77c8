package filecrypt_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"kez.lat/kez/filecrypt"
)

// TestChunks opens every chunk of streams of each size, in a random
// order, and checks that the plaintexts put together are the file; and
// that a chunk opened as another index, with another length, altered, or
// under a stream length that is not its own, does not open.
func TestChunks(t *testing.T) {
	k := testKey(t, 3)
	for _, n := range sizes {
		pt := pattern(n, uint64(n)+1)
		ct := encrypt(t, k, pt, 0)
		c, err := filecrypt.NewChunks(k, ct[:filecrypt.HeaderSize], int64(len(ct)))
		if err != nil {
			t.Fatal(err)
		}
		if c.PlaintextSize() != int64(n) || c.Offset(c.Count()) != int64(len(ct)) || c.Offset(0) != int64(filecrypt.HeaderSize) {
			t.Fatalf("size %d: %d chunks, plaintext %d, end %d", n, c.Count(), c.PlaintextSize(), c.Offset(c.Count()))
		}
		got := make([]byte, n)
		for _, i := range rand.Perm(int(c.Count())) {
			i := uint64(i)
			chunk := ct[c.Offset(i):c.Offset(i+1)]
			if c.Index(c.Offset(i)) != i || c.Index(c.Offset(i+1)-1) != i {
				t.Fatalf("Index of chunk %d's bounds", i)
			}
			p, err := c.Open(nil, chunk, i)
			if err != nil {
				t.Fatalf("size %d chunk %d: %v", n, i, err)
			}
			copy(got[int(i)*cs:], p)
			if c.Count() > 1 {
				if _, err := c.Open(nil, chunk, (i+1)%c.Count()); !errors.Is(err, filecrypt.ErrDecrypt) {
					t.Errorf("chunk %d opened as chunk %d: %v", i, (i+1)%c.Count(), err)
				}
			}
			bad := bytes.Clone(chunk)
			bad[len(bad)/2] ^= 1
			if out, err := c.Open([]byte("kept"), bad, i); !errors.Is(err, filecrypt.ErrDecrypt) || string(out) != "kept" {
				t.Errorf("altered chunk %d: %q, %v", i, out, err)
			}
			if _, err := c.Open(nil, chunk[:len(chunk)-1], i); !errors.Is(err, filecrypt.ErrDecrypt) {
				t.Errorf("short chunk %d: %v", i, err)
			}
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("size %d: chunks opened out of order give another file", n)
		}
		if _, err := c.Open(nil, nil, c.Count()); !errors.Is(err, filecrypt.ErrDecrypt) {
			t.Errorf("chunk past the end: %v", err)
		}
		// The stream cut after a full chunk, or extended by one: its last
		// chunk is opened with the wrong flag.
		if n >= 2*cs {
			cut := int64(filecrypt.HeaderSize + filecrypt.EncChunkSize)
			c2, err := filecrypt.NewChunks(k, ct[:filecrypt.HeaderSize], cut)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c2.Open(nil, ct[filecrypt.HeaderSize:cut], 0); !errors.Is(err, filecrypt.ErrDecrypt) {
				t.Errorf("truncated stream: its last chunk opened: %v", err)
			}
		}
	}
	if _, err := filecrypt.NewChunks(k, []byte("kez-file-v2\n0123456789abcdef"), 44); !errors.Is(err, filecrypt.ErrHeader) {
		t.Errorf("another magic: %v", err)
	}
	if _, err := filecrypt.NewChunks(k, make([]byte, 5), 44); !errors.Is(err, filecrypt.ErrHeader) {
		t.Errorf("short header: %v", err)
	}
	hdr := encrypt(t, k, nil, 0)[:filecrypt.HeaderSize]
	if _, err := filecrypt.NewChunks(k, hdr, int64(filecrypt.HeaderSize)+3); !errors.Is(err, filecrypt.ErrSize) {
		t.Errorf("impossible size: %v", err)
	}
}
