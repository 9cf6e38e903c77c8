package filecrypt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"kez.lat/kez/filecrypt"
)

// viewChunks is filecrypt.viewChunks.
const viewChunks = 128

// sealerSizes adds to sizes the edges of several chunks, a file whose
// stream ends on a 16 KiB group, one whose stream is a group longer, and
// one of more chunks than a Sealer takes in one view.
var sealerSizes = append(append([]int(nil), sizes...), 5*cs-1, 5*cs+1, 16384-filecrypt.HeaderSize-filecrypt.Overhead, 16385-filecrypt.HeaderSize-filecrypt.Overhead, (viewChunks+2)*cs+5)

// TestSealer checks that the stream a Sealer gives, read at ranges of
// any size and alignment, in any order and from several goroutines, is
// byte for byte what a Writer writes with the same key and salt.
//
// It does so for each kind of source: a plain ReaderAt, a Viewer, and a
// Viewer whose View fails every other call (the Sealer reads instead).
func TestSealer(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind, func(t *testing.T) { testSealer(t, kind) })
	}
}

func testSealer(t *testing.T, kind string) {
	k := testKey(t, 5)
	for _, n := range sealerSizes {
		pt := pattern(n, uint64(n)+3)
		want := encrypt(t, k, pt, 0) // zero salt
		src := newSource(kind, pt)
		defer src.check(t)
		s, err := filecrypt.NewSealer(src, int64(n), k, bytes.NewReader(make([]byte, filecrypt.SaltSize)))
		if err != nil {
			t.Fatal(err)
		}
		if s.Size() != int64(len(want)) || !bytes.Equal(s.Header(), want[:filecrypt.HeaderSize]) {
			t.Fatalf("size %d: stream size %d, want %d; or the header differs", n, s.Size(), len(want))
		}
		// The stream in one read, and by iotest.TestReader (which also
		// reads past the end) for small files.
		got := make([]byte, len(want))
		if m, err := s.ReadAt(got, 0); m != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(got, want) {
			t.Fatalf("size %d: ReadAt of the whole stream = %d, %v; equal %v", n, m, err, bytes.Equal(got, want))
		}
		// (iotest reads a byte at a time: each seals a whole chunk.)
		if n <= 100 {
			if err := iotest.TestReader(io.NewSectionReader(s, 0, s.Size()), want); err != nil {
				t.Fatalf("size %d: %v", n, err)
			}
		}
		// Random ranges, concurrently.
		for _, step := range []int{1, 7, 1000, filecrypt.EncChunkSize - 1, filecrypt.EncChunkSize + 3, 3 * filecrypt.EncChunkSize} {
			got := make([]byte, len(want))
			var offs []int
			for off := 0; off < len(want); off += step {
				offs = append(offs, off)
			}
			if len(offs) > 400 {
				continue
			}
			rand.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
			var wg sync.WaitGroup
			for _, off := range offs {
				wg.Go(func() {
					end := min(off+step, len(want))
					if m, err := s.ReadAt(got[off:end], int64(off)); m != end-off || (err != nil && err != io.EOF) {
						t.Errorf("size %d: ReadAt(%d, %d) = %d, %v", n, end-off, off, m, err)
					}
				})
			}
			wg.Wait()
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d, ranges of %d: the stream differs from the Writer's", n, step)
			}
		}
		// Past the end.
		if m, err := s.ReadAt(make([]byte, 10), s.Size()); m != 0 || err != io.EOF {
			t.Errorf("size %d: ReadAt at the end = %d, %v", n, m, err)
		}
		if m, err := s.ReadAt(make([]byte, 10), -1); m != 0 || err == nil {
			t.Errorf("size %d: ReadAt(-1) = %d, %v", n, m, err)
		}
	}
}

// TestSealerVectors: the Sealer gives the streams of the kez-file-v1
// test vectors.
func TestSealerVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		key, _ := hex.DecodeString(v.Key)
		salt, _ := hex.DecodeString(v.Salt)
		k, _ := filecrypt.KeyFromBytes(key)
		s, err := filecrypt.NewSealer(bytes.NewReader(vectorPlaintext(v.Size)), int64(v.Size), k, bytes.NewReader(salt))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := io.ReadAll(io.NewSectionReader(s, 0, s.Size()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(stream)
		if got := hex.EncodeToString(sum[:]); got != v.StreamSHA256 {
			t.Errorf("size %d: stream sha256 %s, want %s", v.Size, got, v.StreamSHA256)
		}
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
}

// TestSealerSourceChanged: a file shorter or longer than announced makes
// the ranges that meet the difference fail with ErrSourceChanged.
func TestSealerSourceChanged(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind, func(t *testing.T) { testSealerSourceChanged(t, kind) })
	}
}

func testSealerSourceChanged(t *testing.T, kind string) {
	k := testKey(t, 6)
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 5} {
		pt := pattern(n+1, 9)
		// Longer by one byte: the final chunk fails.
		s, _ := filecrypt.NewSealer(newSource(kind, pt), int64(n), k, nil)
		if _, err := io.ReadAll(io.NewSectionReader(s, 0, s.Size())); !errors.Is(err, filecrypt.ErrSourceChanged) {
			t.Errorf("file of %d bytes announced as %d: %v, want ErrSourceChanged", n+1, n, err)
		}
		if n == 0 {
			continue
		}
		// Shorter by one byte.
		s, _ = filecrypt.NewSealer(newSource(kind, pt[:n-1]), int64(n), k, nil)
		if _, err := io.ReadAll(io.NewSectionReader(s, 0, s.Size())); !errors.Is(err, filecrypt.ErrSourceChanged) {
			t.Errorf("file of %d bytes announced as %d: %v, want ErrSourceChanged", n-1, n, err)
		}
	}
	// The error of the file is returned as is.
	boom := errors.New("boom")
	s, _ := filecrypt.NewSealer(errReaderAt{boom}, 10, k, nil)
	if _, err := s.ReadAt(make([]byte, 100), 0); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if _, err := filecrypt.NewSealer(bytes.NewReader(nil), -1, k, nil); !errors.Is(err, filecrypt.ErrSize) {
		t.Errorf("negative size: %v", err)
	}
}

type errReaderAt struct{ err error }

func (e errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, e.err }

var sourceKinds = []string{"ReaderAt", "Viewer", "flaky Viewer"}

// source is a file's bytes as the kind of source named, which counts
// the views it lends and gets back.
type source struct {
	*bytes.Reader
	b               []byte
	kind            string
	calls           atomic.Int64
	views, released atomic.Int64
}

func newSource(kind string, b []byte) interface {
	io.ReaderAt
	check(*testing.T)
} {
	s := &source{Reader: bytes.NewReader(b), b: b, kind: kind}
	if kind == "ReaderAt" {
		return readerAtOnly{s}
	}
	return s
}

type readerAtOnly struct{ s *source }

func (r readerAtOnly) ReadAt(p []byte, off int64) (int, error) { return r.s.ReadAt(p, off) }
func (r readerAtOnly) check(t *testing.T)                      { r.s.check(t) }

// View lends b's bytes: a copy, so that a Sealer writing to them would
// show. Like a mapped file, it reads zeros past the end of b up to the
// end of its last page, fails beyond that, and every other call if flaky.
func (s *source) View(off int64, n int) ([]byte, func(), error) {
	if s.kind == "flaky Viewer" && s.calls.Add(1)%2 == 0 {
		return nil, nil, errors.New("no view this time")
	}
	const page = 4096
	if off < 0 || off+int64(n) > (int64(len(s.b))+page-1)&^(page-1) {
		return nil, nil, errors.New("view past the end")
	}
	if n > 8<<20 {
		panic("a view of more than 8 MiB")
	}
	s.views.Add(1)
	lent := func() []byte {
		v := make([]byte, n)
		if off < int64(len(s.b)) {
			copy(v, s.b[off:])
		}
		return v
	}
	v := lent()
	var once atomic.Bool
	return v, func() {
		if !once.CompareAndSwap(false, true) {
			panic("view released twice")
		}
		if !bytes.Equal(v, lent()) {
			panic("the Sealer wrote to a view")
		}
		s.released.Add(1)
	}, nil
}

func (s *source) check(t *testing.T) {
	t.Helper()
	if v, r := s.views.Load(), s.released.Load(); v != r {
		t.Errorf("%s: %d views lent, %d released", s.kind, v, r)
	}
	if s.kind != "ReaderAt" && len(s.b) > 0 && s.views.Load() == 0 {
		t.Errorf("%s: the Sealer never asked for a view", s.kind)
	}
}
