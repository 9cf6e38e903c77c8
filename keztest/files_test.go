package keztest_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez/keztest"
)

func TestSumFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("hello"))
	if got := keztest.SumFile(t, path); got != want {
		t.Errorf("SumFile = %x, want %x", got, want)
	}
	if got := keztest.SumReader(t, strings.NewReader("hello")); got != want {
		t.Errorf("SumReader = %x, want %x", got, want)
	}
}
