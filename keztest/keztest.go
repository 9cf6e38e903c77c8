// Package keztest makes kez keys for tests: fresh random ones, and fixed
// ones from a seed pattern for tests whose output must not change; and it
// sums files, for tests that check one arrived whole.
package keztest

import (
	"testing"

	"kez.lat/kez"
)

// NewKey returns a new random key, failing tb if none can be made.
func NewKey(tb testing.TB) *kez.PrivateKey {
	tb.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// SeedKey returns the key whose seed is the 32 bytes first, first+1, ...
func SeedKey(tb testing.TB, first byte) *kez.PrivateKey {
	tb.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = first + byte(i)
	}
	k, err := kez.NewPrivateKey(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
