package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
)

// TestEncryptInto shares files of sizes around the chunk, group and
// segment edges and checks that the stored blob is the stream (and hash,
// and outboard) that the sequential Writer and Import store for the same
// key and salt, that it decrypts to the file, and that progress ends at
// the file's size; and that a file that changed size, or a cancelled
// ctx, leaves no blob.
func TestEncryptInto(t *testing.T) {
	dir := t.TempDir()
	s, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := blob.Open(filepath.Join(dir, "ref"))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := filecrypt.NewKey(nil)
	salt := bytes.Repeat([]byte{7}, filecrypt.SaltSize)
	const cs, seg = filecrypt.ChunkSize, 4 << 20
	for _, n := range []int64{0, 1, cs - 1, cs, cs + 1, blob.GroupSize - 1, seg - 1, seg, seg + 1, 2*seg + 3*cs + 7} {
		data := make([]byte, n)
		var seed [32]byte
		seed[0] = byte(n)
		rand.NewChaCha8(seed).Read(data)
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		var last int64
		h, err := encryptInto(context.Background(), s, f, n, k, bytes.NewReader(salt), func(d int64) {
			if d < last {
				t.Errorf("size %d: progress went back from %d to %d", n, last, d)
			}
			last = d
		})
		f.Close()
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if last != n && n > 0 {
			t.Errorf("size %d: progress ended at %d", n, last)
		}
		// The sequential path of before, same key and salt.
		var stream bytes.Buffer
		w, _ := filecrypt.NewWriter(&stream, k, bytes.NewReader(salt))
		w.Write(data)
		w.Close()
		want, err := ref.Import(bytes.NewReader(stream.Bytes()), int64(stream.Len()))
		if err != nil || want != h {
			t.Fatalf("size %d: hash %s, sequential %s (%v)", n, h, want, err)
		}
		got, _ := os.ReadFile(filepath.Join(s.Dir(), h.String()))
		ob, _ := os.ReadFile(filepath.Join(s.Dir(), h.String()+".obao"))
		refOB, _ := os.ReadFile(filepath.Join(ref.Dir(), h.String()+".obao"))
		if !bytes.Equal(got, stream.Bytes()) || !bytes.Equal(ob, refOB) {
			t.Fatalf("size %d: stored stream or outboard differs from the sequential one", n)
		}
		r, err := filecrypt.NewReader(bytes.NewReader(got), k)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := io.ReadAll(r); err != nil || !bytes.Equal(pt, data) {
			t.Fatalf("size %d: decrypt: %v", n, err)
		}
	}

	// Changed size, cancelled: an error and no blob.
	path := filepath.Join(dir, "changing")
	os.WriteFile(path, make([]byte, 3*seg), 0o600)
	f, _ := os.Open(path)
	defer f.Close()
	for _, tc := range []struct {
		name string
		size int64
		ctx  func() context.Context
		want error
	}{
		{"shorter", 3*seg + 1, context.Background, filecrypt.ErrSourceChanged},
		{"longer", 3*seg - 1, context.Background, filecrypt.ErrSourceChanged},
		{"cancelled", 3 * seg, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
	} {
		if _, err := encryptInto(tc.ctx(), s, f, tc.size, k, nil, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Written to in place, same size, while it was read: an error, and
	// the blob is not kept.
	held, _ := os.ReadDir(s.Dir())
	written := false
	_, err = encryptInto(context.Background(), s, f, 3*seg, k, nil, func(int64) {
		if !written {
			written = true
			w, _ := os.OpenFile(path, os.O_WRONLY, 0)
			w.WriteAt(bytes.Repeat([]byte{1}, 3*seg), 0) // in place, no truncation
			w.Close()
		}
	})
	if !errors.Is(err, filecrypt.ErrSourceChanged) {
		t.Errorf("written to while shared: %v, want %v", err, filecrypt.ErrSourceChanged)
	}
	ents, _ := os.ReadDir(s.Dir())
	if len(ents) != len(held) {
		t.Errorf("written to while shared: the store holds %d files, %d before", len(ents), len(held))
	}
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Errorf("left %s", e.Name())
		}
	}
}
