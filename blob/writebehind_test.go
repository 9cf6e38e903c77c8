package blob_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"kez.lat/kez/blob"
)

// lockedBuffer is a bytes.Buffer that the test reads while a WriteBehind
// writes to it, failing once it holds limit bytes (if limit > 0).
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

var errFull = errors.New("disk full")

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit > 0 && b.buf.Len()+len(p) > b.limit {
		return 0, errFull
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// TestWriteBehindWrite: bytes written in pieces of any size arrive in
// order and complete once Close returns.
func TestWriteBehindWrite(t *testing.T) {
	var dst lockedBuffer
	wb := blob.NewWriteBehind(&dst, 2, 1000, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 100_000)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for p := want; len(p) > 0; {
		n := min(len(p), rng.IntN(2500))
		if got, err := wb.Write(p[:n]); err != nil || got != n {
			t.Fatalf("Write of %d bytes: %d, %v", n, got, err)
		}
		p = p[n:]
	}
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.buf.Bytes(), want) {
		t.Fatal("written bytes differ")
	}
	if err := wb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := wb.Write([]byte{1}); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// TestWriteBehindSubmit: the callback hears of each buffer, in order,
// after it and every one before it were written, with the total written;
// an empty buffer is not written but counts as a buffer.
func TestWriteBehindSubmit(t *testing.T) {
	var dst lockedBuffer
	var totals []int64
	wb := blob.NewWriteBehind(&dst, 3, 64, func(n int64) error {
		if got := dst.Len(); int64(got) != n {
			t.Errorf("told of %d bytes written with %d in the file", n, got)
		}
		totals = append(totals, n)
		return nil
	})
	var want []int64
	total := int64(0)
	for i := range 50 {
		b, err := wb.Buffer()
		if err != nil {
			t.Fatal(err)
		}
		if cap(b) != 64 || len(b) != 0 {
			t.Fatalf("buffer of len %d cap %d", len(b), cap(b))
		}
		n := i % 5 * 16 // 0 to 64 bytes
		for j := range n {
			b = append(b, byte(i+j))
		}
		total += int64(n)
		want = append(want, total)
		wb.Submit(b)
	}
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(totals, want) {
		t.Fatalf("callbacks with %v, want %v", totals, want)
	}
}

// TestWriteBehindError: a failing write stops everything after it: no
// later byte is written, no later callback runs, and Buffer, Write and
// Close return the error; so does a failing callback.
func TestWriteBehindError(t *testing.T) {
	t.Run("write", func(t *testing.T) {
		dst := lockedBuffer{limit: 250}
		calls := 0
		wb := blob.NewWriteBehind(&dst, 2, 100, func(int64) error { calls++; return nil })
		var err error
		for range 100 {
			var b []byte
			if b, err = wb.Buffer(); err != nil {
				break
			}
			wb.Submit(append(b, make([]byte, 100)...))
		}
		if !errors.Is(err, errFull) {
			t.Fatalf("Buffer after a failed write: %v", err)
		}
		if _, err := wb.Write(make([]byte, 300)); !errors.Is(err, errFull) {
			t.Fatalf("Write after a failed write: %v", err)
		}
		if err := wb.Close(); !errors.Is(err, errFull) {
			t.Fatalf("Close: %v", err)
		}
		if dst.Len() != 200 || calls != 2 {
			t.Fatalf("%d bytes written, %d callbacks, want 200 and 2", dst.Len(), calls)
		}
	})
	t.Run("callback", func(t *testing.T) {
		var dst lockedBuffer
		wb := blob.NewWriteBehind(&dst, 1, 10, func(int64) error { return errFull })
		b, _ := wb.Buffer()
		wb.Submit(append(b, 1))
		if _, err := wb.Buffer(); !errors.Is(err, errFull) {
			t.Fatalf("Buffer after a failed callback: %v", err)
		}
		if err := wb.Close(); !errors.Is(err, errFull) {
			t.Fatalf("Close: %v", err)
		}
	})
}
