package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"lukechampine.com/blake3"

	"kez.lat/kez/blob"
)

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newStore(t testing.TB) *blob.Store {
	t.Helper()
	s, err := blob.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func importBytes(t testing.TB, s *blob.Store, data []byte) blob.Hash {
	t.Helper()
	h, err := s.Import(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestImport(t *testing.T) {
	s := newStore(t)
	for _, n := range []int{0, 1, blob.GroupSize - 1, blob.GroupSize, blob.GroupSize + 1, 5*blob.GroupSize + 3} {
		data := pattern(n, uint64(n))
		h := importBytes(t, s, data)
		if want := blob.Hash(blake3.Sum256(data)); h != want {
			t.Fatalf("Import(%d bytes) = %s, want BLAKE3 %s", n, h, want)
		}
		if size, err := s.Size(h); err != nil || size != int64(n) {
			t.Fatalf("Size = %d, %v", size, err)
		}
		st, err := os.Stat(filepath.Join(s.Dir(), h.String()+".obao"))
		if err != nil || st.Size() != blob.OutboardSize(int64(n)) {
			t.Fatalf("outboard: %v, %v; want %d bytes", st, err, blob.OutboardSize(int64(n)))
		}
	}
	if _, err := s.Import(bytes.NewReader(make([]byte, 10)), 11); !errors.Is(err, blob.ErrSize) {
		t.Errorf("Import of short data = %v, want ErrSize", err)
	}
	if _, err := s.Import(bytes.NewReader(make([]byte, 10)), 9); !errors.Is(err, blob.ErrSize) {
		t.Errorf("Import of long data = %v, want ErrSize", err)
	}
	// Failed imports leave nothing behind.
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Errorf("left %s", e.Name())
		}
	}
}

func TestHash(t *testing.T) {
	h := blob.Hash(blake3.Sum256([]byte("x")))
	p, err := blob.ParseHash(h.String())
	if err != nil || p != h {
		t.Fatalf("ParseHash(%q) = %v, %v", h, p, err)
	}
	for _, s := range []string{"", "00", h.String()[:63] + "G", string(bytes.ToUpper([]byte(h.String())))} {
		if _, err := blob.ParseHash(s); !errors.Is(err, blob.ErrMalformedHash) {
			t.Errorf("ParseHash(%q) = %v, want ErrMalformedHash", s, err)
		}
	}
}

// TestRanges serves ranges of a blob as Bao slices and checks each decodes,
// verified, to the bytes of the range.
func TestRanges(t *testing.T) {
	s := newStore(t)
	const size = 10*blob.GroupSize + 123
	data := pattern(size, 1)
	h := importBytes(t, s, data)
	g := int64(blob.GroupSize)
	for _, r := range [][2]int64{
		{0, size}, {0, 1}, {size - 1, 1}, {g, g}, {g - 1, 2}, {3*g + 5, 4*g + 7}, {size - 200, 200}, {7, size - 7},
	} {
		off, n := r[0], r[1]
		var slice, got bytes.Buffer
		if err := s.WriteSlice(&slice, h, off, n); err != nil {
			t.Fatalf("WriteSlice(%d, %d): %v", off, n, err)
		}
		if err := blob.Decode(&got, &slice, h, size, off, n); err != nil {
			t.Fatalf("Decode(%d, %d): %v", off, n, err)
		}
		if !bytes.Equal(got.Bytes(), data[off:off+n]) {
			t.Fatalf("range [%d, %d) decodes to other bytes", off, off+n)
		}
		// A slice covers only the groups of the range, plus tree nodes.
		if groups := (off+n+g-1)/g - off/g; int64(slice.Len()) > groups*g+blob.OutboardSize(size) {
			t.Errorf("slice of [%d, %d) is %d bytes", off, off+n, slice.Len())
		}
	}
	for _, r := range [][2]int64{{0, 0}, {-1, 5}, {size, 1}, {size - 1, 2}, {0, size + 1}} {
		if err := s.WriteSlice(io.Discard, h, r[0], r[1]); !errors.Is(err, blob.ErrRange) {
			t.Errorf("WriteSlice(%d, %d) = %v, want ErrRange", r[0], r[1], err)
		}
	}
	if err := s.WriteSlice(io.Discard, blob.Hash{1}, 0, 1); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("WriteSlice of a missing blob = %v, want ErrNotFound", err)
	}
	// The slice of one blob does not verify as another.
	var slice bytes.Buffer
	s.WriteSlice(&slice, h, 0, size)
	if err := blob.Decode(io.Discard, &slice, blob.Hash{1}, size, 0, size); !errors.Is(err, blob.ErrCorrupt) {
		t.Errorf("Decode under another hash = %v, want ErrCorrupt", err)
	}
	// Nor with a size other than the one the slice claims.
	slice.Reset()
	s.WriteSlice(&slice, h, 0, g)
	if err := blob.Decode(io.Discard, &slice, h, size+1, 0, g); !errors.Is(err, blob.ErrCorrupt) {
		t.Errorf("Decode with another size = %v, want ErrCorrupt", err)
	}
}

// sourceFunc adapts a function to blob.Source.
type sourceFunc func(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error)

func (f sourceFunc) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	return f(ctx, h, off, n)
}

// counting serves from src and records the offsets asked for and the slice
// bytes sent.
type counting struct {
	src   blob.Source
	offs  []int64
	bytes atomic.Int64
	// failAfter, if > 0, makes the stream fail after that many bytes.
	failAfter int64
}

var errCut = errors.New("connection cut")

func (c *counting) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	c.offs = append(c.offs, off)
	rc, err := c.src.Slice(ctx, h, off, n)
	if err != nil {
		return nil, err
	}
	var r io.Reader = rc
	if c.failAfter > 0 {
		r = io.MultiReader(io.LimitReader(rc, c.failAfter), &errReader{errCut})
	}
	return readCloser{io.TeeReader(r, writerFunc(func(p []byte) { c.bytes.Add(int64(len(p))) })), rc}, nil
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

type readCloser struct {
	io.Reader
	io.Closer
}

func readBlob(t testing.TB, s *blob.Store, h blob.Hash) []byte {
	t.Helper()
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetch(t *testing.T) {
	a, b := newStore(t), newStore(t)
	for _, n := range []int{0, 1, blob.GroupSize, blob.GroupSize + 1, 3*blob.GroupSize + 1, 37*blob.GroupSize - 5, 64 * blob.GroupSize} {
		data := pattern(n, 3)
		h := importBytes(t, a, data)
		var last int64
		if err := b.Fetch(context.Background(), h, int64(n), a, func(v int64) { last = v }); err != nil {
			t.Fatalf("Fetch(%d bytes): %v", n, err)
		}
		if !bytes.Equal(readBlob(t, b, h), data) {
			t.Fatalf("fetched blob differs")
		}
		// The outboard, kept from the tree as it arrived, is the one
		// the import computed.
		obA, errA := os.ReadFile(filepath.Join(a.Dir(), h.String()+".obao"))
		obB, errB := os.ReadFile(filepath.Join(b.Dir(), h.String()+".obao"))
		if errA != nil || errB != nil || !bytes.Equal(obA, obB) {
			t.Fatalf("Fetch(%d bytes): outboard differs from the import's (%v, %v)", n, errA, errB)
		}
		if n > 0 && last != int64(n) {
			t.Errorf("last progress %d, want %d", last, n)
		}
		// b can serve it in turn.
		c := newStore(t)
		if err := c.Fetch(context.Background(), h, int64(n), b, nil); err != nil {
			t.Fatalf("Fetch from the fetcher: %v", err)
		}
		if b.Partial(h) != 0 {
			t.Errorf("Partial after completion = %d", b.Partial(h))
		}
	}
}

// TestFetchResume cuts a download half-way, then resumes it: the second
// request starts at exactly the bytes the first verified, and the verified
// bytes are not fetched again.
func TestFetchResume(t *testing.T) {
	a, b := newStore(t), newStore(t)
	const size = 4<<20 + 1000
	data := pattern(size, 4)
	h := importBytes(t, a, data)

	cut := &counting{src: a, failAfter: size / 2}
	err := b.Fetch(context.Background(), h, size, cut, nil)
	if !errors.Is(err, errCut) {
		t.Fatalf("first Fetch = %v, want the cut", err)
	}
	verified := b.Partial(h)
	// Everything but the group in flight and the tree nodes verified.
	if verified < size/2-2*blob.GroupSize || verified%blob.GroupSize != 0 {
		t.Fatalf("verified %d bytes of %d sent", verified, cut.bytes.Load())
	}
	if b.Has(h) {
		t.Fatal("blob present after an interrupted fetch")
	}

	rest := &counting{src: a}
	if err := b.Fetch(context.Background(), h, size, rest, nil); err != nil {
		t.Fatal(err)
	}
	if len(rest.offs) != 1 || rest.offs[0] != verified {
		t.Fatalf("resumed at %v, want [%d]", rest.offs, verified)
	}
	if got, most := rest.bytes.Load(), int64(size)-verified+blob.OutboardSize(size); got > most {
		t.Errorf("resume fetched %d bytes, want at most %d", got, most)
	}
	if !bytes.Equal(readBlob(t, b, h), data) {
		t.Fatal("resumed blob differs")
	}
}

// TestFetchCorrupt serves a blob with one byte flipped: the fetch stops at
// the group holding it, the partial file holds only the verified groups
// before it, the blob does not appear, and a fetch from an honest source
// resumes from there.
func TestFetchCorrupt(t *testing.T) {
	const size = 20*blob.GroupSize + 500
	data := pattern(size, 5)
	for _, tt := range []struct {
		name   string
		at     int64 // byte to flip in the provider's blob
		inTree bool  // flip in the outboard instead
	}{
		{"data first group", 10, false},
		{"data middle", 7*blob.GroupSize + 1234, false},
		{"data last byte", size - 1, false},
		{"outboard node", 8 + 5*64, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			good, bad, b := newStore(t), newStore(t), newStore(t)
			h := importBytes(t, good, data)
			importBytes(t, bad, data)
			path := filepath.Join(bad.Dir(), h.String())
			if tt.inTree {
				path += ".obao"
			}
			flipByte(t, path, tt.at)

			err := b.Fetch(context.Background(), h, size, bad, nil)
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("Fetch from a corrupt source = %v, want ErrCorrupt", err)
			}
			if b.Has(h) {
				t.Fatal("blob present after a corrupt fetch")
			}
			part, _ := os.ReadFile(filepath.Join(b.Dir(), h.String()+".part"))
			if !bytes.Equal(part, data[:len(part)]) {
				t.Fatal("partial file holds bytes that are not the blob's")
			}
			if !tt.inTree {
				if want := tt.at / blob.GroupSize * blob.GroupSize; int64(len(part)) != want || b.Partial(h) != want {
					t.Fatalf("partial file %d bytes (recorded %d), want the %d before the bad group", len(part), b.Partial(h), want)
				}
			}
			honest := &counting{src: good}
			if err := b.Fetch(context.Background(), h, size, honest, nil); err != nil {
				t.Fatal(err)
			}
			if honest.offs[0] != int64(len(part)) {
				t.Errorf("resumed at %d, want %d", honest.offs[0], len(part))
			}
			if !bytes.Equal(readBlob(t, b, h), data) {
				t.Fatal("blob differs")
			}
		})
	}
}

func flipByte(t testing.TB, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 1
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestFetchAfterCrash: bytes past the recorded length (written but not
// synced before a crash) are dropped, and the fetch resumes at the record.
func TestFetchAfterCrash(t *testing.T) {
	a, b := newStore(t), newStore(t)
	const size = 3*blob.GroupSize + 7
	data := pattern(size, 6)
	h := importBytes(t, a, data)
	part := filepath.Join(b.Dir(), h.String()+".part")
	junk := append(append([]byte(nil), data[:blob.GroupSize]...), bytes.Repeat([]byte{0xee}, 5000)...)
	os.WriteFile(part, junk, 0o600)
	os.WriteFile(part+".len", []byte("16384"), 0o600)
	src := &counting{src: a}
	if err := b.Fetch(context.Background(), h, size, src, nil); err != nil {
		t.Fatal(err)
	}
	if src.offs[0] != blob.GroupSize {
		t.Errorf("resumed at %d, want %d", src.offs[0], blob.GroupSize)
	}
	if !bytes.Equal(readBlob(t, b, h), data) {
		t.Fatal("blob differs")
	}
	// A record past the partial file's end is not trusted.
	c := newStore(t)
	part = filepath.Join(c.Dir(), h.String()+".part")
	os.WriteFile(part, data[:100], 0o600)
	os.WriteFile(part+".len", []byte("50000"), 0o600)
	src = &counting{src: a}
	if err := c.Fetch(context.Background(), h, size, src, nil); err != nil || src.offs[0] != 0 {
		t.Fatalf("Fetch = %v, from %v; want from 0", err, src.offs)
	}
}

// TestFetchCancel: cancelling the context unblocks a fetch stuck on a
// silent source, and keeps what was verified.
func TestFetchCancel(t *testing.T) {
	a, b := newStore(t), newStore(t)
	const size = 8 * blob.GroupSize
	h := importBytes(t, a, pattern(size, 7))
	ctx, cancel := context.WithCancel(context.Background())
	stall := sourceFunc(func(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
		rc, err := a.Slice(ctx, h, off, n)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			io.CopyN(pw, rc, 4*blob.GroupSize) // then go silent until closed
		}()
		return readCloser{pr, closerFunc(func() error { rc.Close(); return pr.Close() })}, nil
	})
	err := b.Fetch(ctx, h, size, stall, func(v int64) {
		if v >= 2*blob.GroupSize {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v, want context.Canceled", err)
	}
	if b.Partial(h) < 2*blob.GroupSize {
		t.Errorf("verified %d bytes recorded after cancel", b.Partial(h))
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestFetchBusy(t *testing.T) {
	a, b := newStore(t), newStore(t)
	h := importBytes(t, a, pattern(100, 8))
	inner := make(chan error, 1)
	src := sourceFunc(func(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
		inner <- b.Fetch(ctx, h, 100, a, nil)
		return a.Slice(ctx, h, off, n)
	})
	if err := b.Fetch(context.Background(), h, 100, src, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-inner; !errors.Is(err, blob.ErrBusy) {
		t.Fatalf("concurrent Fetch = %v, want ErrBusy", err)
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	h := importBytes(t, s, []byte("hello"))
	if err := s.Remove(h); err != nil {
		t.Fatal(err)
	}
	if s.Has(h) {
		t.Fatal("blob still there")
	}
	if _, err := s.Size(h); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Size = %v, want ErrNotFound", err)
	}
	if ents, _ := os.ReadDir(s.Dir()); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// hookReader runs hook once before a read past after bytes.
type hookReader struct {
	r     io.Reader
	n     int64
	after int64
	hook  func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.hook != nil && h.n >= h.after {
		h.hook()
		h.hook = nil
	}
	if h.hook != nil && int64(len(p)) > h.after-h.n {
		p = p[:h.after-h.n]
	}
	n, err := h.r.Read(p)
	h.n += int64(n)
	return n, err
}

// TestFetchBusyOtherProcess: two Store values on one directory, as two
// kez-chat processes on one profile. While one resumes a fetch, the
// other's fetch of the same blob fails at once with ErrBusy and leaves
// the partial file alone (it used to cut it back to the recorded length
// under the first, whose blob then did not verify); once the first is
// done, the other finds the blob.
func TestFetchBusyOtherProcess(t *testing.T) {
	a, b := newStore(t), newStore(t)
	b2, err := blob.Open(b.Dir())
	if err != nil {
		t.Fatal(err)
	}
	const size = 6 << 20
	data := pattern(size, 9)
	h := importBytes(t, a, data)
	if err := b.Fetch(context.Background(), h, size, &counting{src: a, failAfter: 1 << 20}, nil); !errors.Is(err, errCut) {
		t.Fatalf("first Fetch = %v, want the cut", err)
	}
	recorded := b.Partial(h)
	part := filepath.Join(b.Dir(), h.String()+".part")
	var inner error
	var innerSize, beforeSize int64
	src := sourceFunc(func(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
		rc, err := a.Slice(ctx, h, off, n)
		if err != nil {
			return nil, err
		}
		return readCloser{&hookReader{r: rc, after: 3 << 20, hook: func() {
			// Once this fetch has written past the recorded length.
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if fi, err := os.Stat(part); err == nil && fi.Size() > recorded {
					beforeSize = fi.Size()
					break
				}
			}
			inner = b2.Fetch(ctx, h, size, sourceFunc(func(context.Context, blob.Hash, int64, int64) (io.ReadCloser, error) {
				return nil, errors.New("unreachable")
			}), nil)
			if fi, err := os.Stat(part); err == nil {
				innerSize = fi.Size()
			}
		}}, rc}, nil
	})
	if err := b.Fetch(context.Background(), h, size, src, nil); err != nil {
		t.Fatalf("resumed Fetch: %v", err)
	}
	if !errors.Is(inner, blob.ErrBusy) {
		t.Errorf("Fetch by another Store meanwhile = %v, want ErrBusy", inner)
	}
	if beforeSize <= recorded || innerSize < beforeSize {
		t.Errorf("partial file of %d bytes (recorded %d) became %d bytes", beforeSize, recorded, innerSize)
	}
	if !bytes.Equal(readBlob(t, b, h), data) {
		t.Fatal("fetched blob differs")
	}
	if err := b2.Fetch(context.Background(), h, size, a, nil); err != nil || !b2.Has(h) {
		t.Fatalf("Fetch by another Store afterwards = %v, has it: %v", err, b2.Has(h))
	}
	if ents, _ := filepath.Glob(filepath.Join(b.Dir(), "*.part*")); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}
