package blob_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
)

// share encrypts the file at path under a fresh content key into s, in one
// pass and one chunk of memory, and returns the blob's hash and the key.
func share(t testing.TB, s *blob.Store, path string) (blob.Hash, filecrypt.Key) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	k, err := filecrypt.NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		w, err := filecrypt.NewWriter(pw, k, nil)
		if err == nil {
			_, err = io.Copy(w, f)
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	h, err := s.Import(pr, filecrypt.EncryptedSize(st.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return h, k
}

// TestShareFetch is the whole local path of a shared file: alice encrypts
// and imports it, wraps its key for bob; bob fetches the blob from her store
// (verified), unwraps the key and decrypts to his file.
func TestShareFetch(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)
	dir := t.TempDir()
	src := filepath.Join(dir, "photo.jpg")
	data := pattern(3<<20+12345, 9)
	os.WriteFile(src, data, 0o600)

	as, bs := newStore(t), newStore(t)
	h, k := share(t, as, src)
	wrapped, err := filecrypt.Wrap(alice, bob.Public(), k, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := filecrypt.EncryptedSize(int64(len(data))) // announced with h and wrapped

	if err := bs.Fetch(context.Background(), h, size, as, nil); err != nil {
		t.Fatal(err)
	}
	bk, err := filecrypt.Unwrap(bob, alice.Public(), wrapped, h)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := bs.Open(h)
	defer f.Close()
	r, err := filecrypt.NewReader(f, bk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decrypted %d bytes, %v", len(got), err)
	}
}

const benchSize = 64 << 20

func benchFile(b *testing.B) string {
	path := filepath.Join(b.TempDir(), "file")
	if err := os.WriteFile(path, pattern(benchSize, 1), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkShare: encrypt a 64 MiB file and import it (hash, outboard,
// blob file), vs BenchmarkCopyFile, a plain copy of the file.
//
//	go test -run '^$' -bench 'Share|CopyFile|FetchDecrypt' -benchtime 10x ./blob
func BenchmarkShare(b *testing.B) {
	path := benchFile(b)
	s := newStore(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		h, _ := share(b, s, path)
		s.Remove(h)
	}
}

func BenchmarkCopyFile(b *testing.B) {
	path := benchFile(b)
	dst := filepath.Join(b.TempDir(), "copy")
	b.SetBytes(benchSize)
	for b.Loop() {
		in, _ := os.Open(path)
		out, _ := os.Create(dst)
		io.Copy(out, in)
		out.Sync()
		out.Close()
		in.Close()
	}
}

// BenchmarkFetchDecrypt: a verified fetch from another store (Bao slice
// out, verify in, partial file, outboard) then decryption to a file.
func BenchmarkFetchDecrypt(b *testing.B) {
	path := benchFile(b)
	as := newStore(b)
	h, k := share(b, as, path)
	size := filecrypt.EncryptedSize(benchSize)
	out := filepath.Join(b.TempDir(), "out")
	b.SetBytes(benchSize)
	for b.Loop() {
		bs := newStore(b)
		if err := bs.Fetch(context.Background(), h, size, as, nil); err != nil {
			b.Fatal(err)
		}
		f, _ := bs.Open(h)
		r, _ := filecrypt.NewReader(f, k)
		o, _ := os.Create(out)
		if _, err := io.Copy(o, r); err != nil {
			b.Fatal(err)
		}
		o.Close()
		f.Close()
	}
}
