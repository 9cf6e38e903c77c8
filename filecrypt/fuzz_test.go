package filecrypt_test

import (
	"bytes"
	"io"
	"testing"

	"kez.lat/kez/filecrypt"
)

func FuzzReader(f *testing.F) {
	k := testKey(f, 9)
	for _, n := range []int{0, 5, filecrypt.ChunkSize, filecrypt.ChunkSize + 3} {
		ct := encrypt(f, k, pattern(n, 1), 0)
		f.Add(ct)
		f.Add(ct[:len(ct)-1])
	}
	f.Add([]byte(filecrypt.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := filecrypt.NewReader(bytes.NewReader(data), k)
		if err != nil {
			return
		}
		pt, err := io.ReadAll(r)
		if err != nil {
			return
		}
		// Only a well-formed stream decrypts, and it has the size of one.
		if n, err := filecrypt.PlaintextSize(int64(len(data))); err != nil || n != int64(len(pt)) {
			t.Fatalf("decrypted %d bytes from a %d-byte stream; PlaintextSize = %d, %v", len(pt), len(data), n, err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	k := testKey(f, 10)
	f.Add([]byte("hello"), uint16(1))
	f.Add(pattern(filecrypt.ChunkSize+1, 1), uint16(4096))
	f.Fuzz(func(t *testing.T, pt []byte, step uint16) {
		ct := encrypt(t, k, pt, int(step))
		if int64(len(ct)) != filecrypt.EncryptedSize(int64(len(pt))) {
			t.Fatalf("stream of %d bytes is %d bytes long, EncryptedSize says %d", len(pt), len(ct), filecrypt.EncryptedSize(int64(len(pt))))
		}
		got, err := decrypt(k, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes: %d bytes, %v", len(pt), len(got), err)
		}
	})
}

func FuzzPlaintextSize(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(filecrypt.HeaderSize + filecrypt.EncChunkSize))
	f.Fuzz(func(t *testing.T, s int64) {
		if s < 0 || s > 1<<60 {
			return
		}
		if n, err := filecrypt.PlaintextSize(s); err == nil && filecrypt.EncryptedSize(n) != s {
			t.Fatalf("PlaintextSize(%d) = %d, but EncryptedSize(%d) = %d", s, n, n, filecrypt.EncryptedSize(n))
		}
	})
}
