package blob

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"lukechampine.com/blake3"
	"lukechampine.com/blake3/bao"
)

// memAt is an io.WriterAt into a byte slice that must be large enough.
type memAt struct {
	mu  sync.Mutex
	buf []byte
}

func (m *memAt) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.buf)) {
		return 0, errors.New("write past the end")
	}
	return copy(m.buf[off:], p), nil
}

// encodeSizes are the blob sizes the parallel outboard is checked at:
// empty, within a chunk and a group, at the edges of a chunk, a group and
// a segment, and several segments with a ragged end (whose subtrees are
// not all segments of the same height).
var encodeSizes = []int64{
	0, 1, 1023, 1024, 1025, GroupSize - 1, GroupSize, GroupSize + 1, 3*GroupSize + 7,
	segSize - 1, segSize, segSize + 1, segSize + GroupSize, 2 * segSize, 2*segSize + 1,
	3*segSize - GroupSize + 5, 5*segSize + 12345,
}

// TestEncodeParallel checks that the outboard and root built a segment
// at a time in parallel, with fills in any order or in sequence, are
// byte for byte those of bao.Encode, and the root is the BLAKE3 hash;
// and that the data written is the data.
func TestEncodeParallel(t *testing.T) {
	for _, size := range encodeSizes {
		data := randBytes(size)
		want, wantRoot := bao.EncodeBuf(data, Group, true)
		if wantRoot != blake3.Sum256(data) {
			t.Fatal("bao root is not the BLAKE3 hash")
		}
		for _, sequential := range []bool{false, true} {
			ob := &memAt{buf: make([]byte, OutboardSize(size))}
			out := &memAt{buf: make([]byte, size)}
			var mu sync.Mutex
			var next int64
			root, err := encodeParallel(out, ob, size, sequential, func(p []byte, off int64) error {
				if sequential {
					mu.Lock()
					defer mu.Unlock()
					if off != next {
						t.Errorf("size %d: sequential fill at %d, want %d", size, off, next)
					}
					next = off + int64(len(p))
				}
				copy(p, data[off:])
				return nil
			})
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if root != wantRoot {
				t.Errorf("size %d sequential=%v: root %x, want %x", size, sequential, root, wantRoot)
			}
			if !bytes.Equal(ob.buf, want) {
				t.Errorf("size %d sequential=%v: outboard differs from bao.Encode", size, sequential)
			}
			if !bytes.Equal(out.buf, data) {
				t.Errorf("size %d sequential=%v: data written differs", size, sequential)
			}
		}
	}
}

// TestEncodeParallelError checks that the first error of a fill is
// returned and stops the work.
func TestEncodeParallelError(t *testing.T) {
	boom := errors.New("boom")
	size := int64(6*segSize + 3)
	ob := &memAt{buf: make([]byte, OutboardSize(size))}
	for _, sequential := range []bool{false, true} {
		var mu sync.Mutex
		calls := 0
		_, err := encodeParallel(nil, ob, size, sequential, func(p []byte, off int64) error {
			mu.Lock()
			calls++
			mu.Unlock()
			if off == 2*segSize {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Fatalf("sequential=%v: error %v, want boom", sequential, err)
		}
		if sequential && calls != 3 {
			t.Errorf("sequential: %d fills, want 3 (none after the failing one)", calls)
		}
	}
	// A write error.
	_, err := encodeParallel(nil, &memAt{buf: make([]byte, 10)}, size, false, func(p []byte, off int64) error { return nil })
	if err == nil {
		t.Fatal("no error from an outboard write past the end")
	}
	// A data write error, on the writer's goroutine: returned, and the
	// workers stop filling within the buffers in flight.
	size = 32 * segSize
	var fills atomic.Int64
	_, err = encodeParallel(failWriterAt{boom}, &memAt{buf: make([]byte, OutboardSize(size))}, size, false, func(p []byte, off int64) error {
		fills.Add(1)
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("data write error: %v, want boom", err)
	}
	if n := fills.Load(); n > int64(2*(writeAhead+runtime.GOMAXPROCS(0))) {
		t.Errorf("%d fills after the first write failed, want at most the buffers in flight", n)
	}
}

type failWriterAt struct{ err error }

func (f failWriterAt) WriteAt([]byte, int64) (int, error) { return 0, f.err }

// TestImportAt checks that ImportAt stores what Import stores, the same
// blob and outboard, at sizes around the segment edges; that a short
// source is ErrSize and a failing one its error; and that failures leave
// nothing behind.
func TestImportAt(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{0, 1, GroupSize + 1, segSize - 1, segSize + 1, 3*segSize + 17} {
		data := randBytes(size + 1)[1:]
		h, err := s.ImportAt(bytes.NewReader(data), size)
		if err != nil {
			t.Fatal(err)
		}
		want, root := bao.EncodeBuf(data, Group, true)
		if h != root {
			t.Fatalf("size %d: hash %s, want %x", size, h, root)
		}
		got, _ := os.ReadFile(s.path(h))
		ob, _ := os.ReadFile(s.path(h) + ".obao")
		if !bytes.Equal(got, data) || !bytes.Equal(ob, want) {
			t.Fatalf("size %d: stored blob or outboard differs", size)
		}
		if err := s.Remove(h); err != nil {
			t.Fatal(err)
		}
		if h2, err := s.Import(bytes.NewReader(data), size); err != nil || h2 != h {
			t.Fatalf("size %d: Import = %s, %v; ImportAt gave %s", size, h2, err, h)
		}
		ob2, _ := os.ReadFile(s.path(h) + ".obao")
		if !bytes.Equal(ob2, want) {
			t.Fatalf("size %d: Import's outboard differs", size)
		}
	}
	if _, err := s.ImportAt(bytes.NewReader(make([]byte, 2*segSize)), 2*segSize+1); !errors.Is(err, ErrSize) {
		t.Errorf("ImportAt of short data = %v, want ErrSize", err)
	}
	boom := errors.New("boom")
	if _, err := s.ImportAt(failAt{boom}, 3*segSize); !errors.Is(err, boom) {
		t.Errorf("ImportAt of a failing source = %v, want boom", err)
	}
	if _, err := s.ImportAt(bytes.NewReader(nil), -1); !errors.Is(err, ErrSize) {
		t.Errorf("ImportAt of -1 bytes = %v, want ErrSize", err)
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Errorf("left %s", e.Name())
		}
	}
}

type failAt struct{ err error }

func (f failAt) ReadAt([]byte, int64) (int, error) { return 0, f.err }

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(n int64) []byte {
	var seed [32]byte
	seed[0] = byte(n)
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	return b
}
