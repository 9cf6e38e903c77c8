package filecrypt_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"kez.lat/kez/filecrypt"
)

const cs = filecrypt.ChunkSize

// sizes covers the chunk boundaries.
var sizes = []int{0, 1, 100, cs - 1, cs, cs + 1, 2 * cs, 3*cs + 5}

func testKey(t testing.TB, seed byte) filecrypt.Key {
	t.Helper()
	k, err := filecrypt.KeyFromBytes(bytes.Repeat([]byte{seed}, filecrypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// encrypt returns the kez-file-v1 stream of pt under k, written in pieces
// of step bytes (all at once if step is 0).
func encrypt(t testing.TB, k filecrypt.Key, pt []byte, step int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := filecrypt.NewWriter(&buf, k, bytes.NewReader(make([]byte, filecrypt.SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	if step == 0 {
		step = max(1, len(pt))
	}
	for p := pt; len(p) > 0; {
		n := min(step, len(p))
		if m, err := w.Write(p[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v", m, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	return buf.Bytes()
}

func decrypt(k filecrypt.Key, ct []byte) ([]byte, error) {
	r, err := filecrypt.NewReader(bytes.NewReader(ct), k)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	for _, n := range sizes {
		pt := pattern(n, uint64(n))
		for _, step := range []int{0, 1000, cs, cs + 7} {
			if n > 2*cs && step == 1000 {
				continue
			}
			ct := encrypt(t, k, pt, step)
			if got, want := int64(len(ct)), filecrypt.EncryptedSize(int64(n)); got != want {
				t.Errorf("size %d: stream is %d bytes, EncryptedSize = %d", n, got, want)
			}
			if got, err := filecrypt.PlaintextSize(int64(len(ct))); err != nil || got != int64(n) {
				t.Errorf("PlaintextSize(%d) = %d, %v, want %d", len(ct), got, err, n)
			}
			got, err := decrypt(k, ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("size %d step %d: decrypt = %d bytes, %v", n, step, len(got), err)
			}
		}
	}
}

// TestReaderIOTest checks the Reader against the io.Reader contract, and
// through a source that returns one byte at a time and data with io.EOF.
func TestReaderIOTest(t *testing.T) {
	k := testKey(t, 2)
	for _, n := range sizes {
		pt := pattern(n, 7)
		ct := encrypt(t, k, pt, 0)
		r, err := filecrypt.NewReader(bytes.NewReader(ct), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := iotest.TestReader(r, pt); err != nil {
			t.Errorf("size %d: %v", n, err)
		}
		for name, src := range map[string]io.Reader{
			"onebyte": iotest.OneByteReader(bytes.NewReader(ct)),
			"dataeof": iotest.DataErrReader(bytes.NewReader(ct)),
			"half":    iotest.HalfReader(bytes.NewReader(ct)),
		} {
			r, err := filecrypt.NewReader(src, k)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("size %d %s: %d bytes, %v", n, name, len(got), err)
			}
		}
	}
}

func TestSourceError(t *testing.T) {
	k := testKey(t, 3)
	ct := encrypt(t, k, pattern(3*cs, 1), 0)
	boom := errors.New("boom")
	src := io.MultiReader(bytes.NewReader(ct[:filecrypt.HeaderSize+filecrypt.EncChunkSize+10]), iotest.ErrReader(boom))
	r, err := filecrypt.NewReader(src, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || len(got) != cs {
		t.Fatalf("ReadAll = %d bytes, %v; want %d, boom", len(got), err, cs)
	}
}

// chunks splits a stream into its header and encrypted chunks.
func chunks(ct []byte) (hdr []byte, cks [][]byte) {
	hdr, ct = ct[:filecrypt.HeaderSize], ct[filecrypt.HeaderSize:]
	for len(ct) > 0 {
		n := min(filecrypt.EncChunkSize, len(ct))
		cks = append(cks, ct[:n])
		ct = ct[n:]
	}
	return hdr, cks
}

func join(hdr []byte, cks ...[]byte) []byte {
	out := append([]byte(nil), hdr...)
	for _, c := range cks {
		out = append(out, c...)
	}
	return out
}

func flip(b []byte, i int) []byte {
	b = append([]byte(nil), b...)
	b[i] ^= 0x40
	return b
}

func TestTamper(t *testing.T) {
	k := testKey(t, 4)
	full := encrypt(t, k, pattern(3*cs, 2), 0)     // 3 full chunks, last one full
	short := encrypt(t, k, pattern(2*cs+10, 3), 0) // 2 full chunks and a short one
	hf, cf := chunks(full)
	hs, cs := chunks(short)
	// Another stream under the same content key, with its own salt.
	var ob bytes.Buffer
	ow, _ := filecrypt.NewWriter(&ob, k, nil)
	ow.Write(pattern(3*filecrypt.ChunkSize, 2))
	ow.Close()
	_, co := chunks(ob.Bytes())

	tests := []struct {
		name string
		ct   []byte
		want error
		// prefix is how many plaintext bytes may come out before the
		// error: those of the chunks before the damage.
		prefix int
	}{
		{"wrong magic", flip(full, 0), filecrypt.ErrHeader, 0},
		{"header only", hf, filecrypt.ErrTruncated, 0},
		{"short header", full[:10], filecrypt.ErrHeader, 0},
		{"empty", nil, filecrypt.ErrHeader, 0},
		{"salt changed", flip(full, filecrypt.HeaderSize-1), filecrypt.ErrDecrypt, 0},
		{"first chunk flipped", flip(full, filecrypt.HeaderSize+5), filecrypt.ErrDecrypt, 0},
		{"tag flipped", flip(full, filecrypt.HeaderSize+filecrypt.EncChunkSize-1), filecrypt.ErrDecrypt, 0},
		{"last chunk flipped", flip(short, len(short)-3), filecrypt.ErrDecrypt, 2 * filecrypt.ChunkSize},
		{"swapped", join(hf, cf[1], cf[0], cf[2]), filecrypt.ErrDecrypt, 0},
		{"duplicated", join(hf, cf[0], cf[0], cf[1], cf[2]), filecrypt.ErrDecrypt, filecrypt.ChunkSize},
		{"last dropped, full", join(hf, cf[0], cf[1]), filecrypt.ErrTruncated, filecrypt.ChunkSize},
		{"last dropped, short", join(hs, cs[0], cs[1]), filecrypt.ErrTruncated, filecrypt.ChunkSize},
		{"cut in last chunk", short[:len(short)-1], filecrypt.ErrDecrypt, 2 * filecrypt.ChunkSize},
		{"cut in a chunk", full[:filecrypt.HeaderSize+filecrypt.EncChunkSize+100], filecrypt.ErrDecrypt, filecrypt.ChunkSize},
		{"cut inside a tag", full[:filecrypt.HeaderSize+filecrypt.EncChunkSize+10], filecrypt.ErrTruncated, filecrypt.ChunkSize},
		{"one byte appended, full", append(append([]byte(nil), full...), 0), filecrypt.ErrTrailingData, 2 * filecrypt.ChunkSize},
		{"chunk appended, full", join(hf, cf[0], cf[1], cf[2], cf[0]), filecrypt.ErrTrailingData, 2 * filecrypt.ChunkSize},
		{"byte appended, short", append(append([]byte(nil), short...), 0), filecrypt.ErrDecrypt, 2 * filecrypt.ChunkSize},
		{"other stream's chunk", join(hf, cf[0], co[1], cf[2]), filecrypt.ErrDecrypt, filecrypt.ChunkSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := filecrypt.NewReader(bytes.NewReader(tt.ct), k)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(r)
				// Sticky.
				if _, err2 := r.Read(make([]byte, 1)); !errors.Is(err2, tt.want) {
					t.Errorf("Read after error = %v", err2)
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if len(got) != tt.prefix {
				t.Errorf("released %d bytes before the error, want %d", len(got), tt.prefix)
			}
		})
	}
}

func TestWrongKey(t *testing.T) {
	ct := encrypt(t, testKey(t, 5), []byte("hello"), 0)
	if _, err := decrypt(testKey(t, 6), ct); !errors.Is(err, filecrypt.ErrDecrypt) {
		t.Fatalf("decrypt with another key = %v, want ErrDecrypt", err)
	}
}

func TestFreshSalt(t *testing.T) {
	k := testKey(t, 7)
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		w, err := filecrypt.NewWriter(buf, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("same"))
		w.Close()
	}
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two encryptions under one key are equal: salt not fresh")
	}
}

func TestPlaintextSize(t *testing.T) {
	for _, n := range []int64{0, 1, cs - 1, cs, cs + 1, 1 << 40, 1<<40 + 3} {
		e := filecrypt.EncryptedSize(n)
		if got, err := filecrypt.PlaintextSize(e); err != nil || got != n {
			t.Errorf("PlaintextSize(EncryptedSize(%d)) = %d, %v", n, got, err)
		}
	}
	h, o, ec := int64(filecrypt.HeaderSize), int64(filecrypt.Overhead), int64(filecrypt.EncChunkSize)
	for _, s := range []int64{-1, 0, h, h + o - 1, h + ec + 1, h + ec + o} {
		if got, err := filecrypt.PlaintextSize(s); !errors.Is(err, filecrypt.ErrSize) {
			t.Errorf("PlaintextSize(%d) = %d, %v, want ErrSize", s, got, err)
		}
	}
}

func TestKeyRedacted(t *testing.T) {
	k := testKey(t, 0xab)
	for _, s := range []string{k.String(), fmtAll(k)} {
		if bytes.Contains([]byte(s), []byte("abab")) || bytes.Contains([]byte(s), []byte{0xab}) {
			t.Errorf("key printed as %q", s)
		}
	}
	k2, err := filecrypt.NewKey(nil)
	if err != nil || k2.IsZero() || k2.Equal(k) || !k.Equal(testKey(t, 0xab)) {
		t.Fatalf("NewKey = %v, %v", k2, err)
	}
	if _, err := filecrypt.KeyFromBytes(make([]byte, 31)); err == nil {
		t.Fatal("KeyFromBytes accepted 31 bytes")
	}
}

// BenchmarkEncrypt and BenchmarkDecrypt: go test -bench . ./filecrypt
func BenchmarkEncrypt(b *testing.B) {
	k := testKey(b, 8)
	pt := pattern(4<<20, 1)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		w, _ := filecrypt.NewWriter(io.Discard, k, nil)
		w.Write(pt)
		w.Close()
	}
}

func BenchmarkDecrypt(b *testing.B) {
	k := testKey(b, 8)
	pt := pattern(4<<20, 1)
	ct := encrypt(b, k, pt, 0)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		r, _ := filecrypt.NewReader(bytes.NewReader(ct), k)
		io.Copy(io.Discard, r)
	}
}
