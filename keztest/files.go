package keztest

import (
	"crypto/sha256"
	"io"
	"os"
	"testing"
)

// SumFile returns the SHA-256 of the file at path, failing tb if it cannot
// be read.
func SumFile(tb testing.TB, path string) [32]byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	return SumReader(tb, f)
}

// SumReader returns the SHA-256 of what r reads to its end, failing tb on
// an error.
func SumReader(tb testing.TB, r io.Reader) [32]byte {
	tb.Helper()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
		tb.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
