package kez

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestExpandedBounded: the verification tables of more keys than
// maxExpanded are not all kept, and a key dropped from the cache still
// verifies.
func TestExpandedBounded(t *testing.T) {
	msg := []byte("bounded")
	var first *PrivateKey
	var sig []byte
	for i := range maxExpanded + 50 {
		seed := sha256.Sum256(fmt.Appendf(nil, "key %d", i))
		k, err := NewPrivateKey(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		s := k.Sign(PurposeSigchain, msg)
		if i == 0 {
			first, sig = k, s
		}
		if !k.Public().Verify(PurposeSigchain, msg, s) {
			t.Fatalf("key %d: own signature refused", i)
		}
	}
	expanded.RLock()
	n := len(expanded.m)
	expanded.RUnlock()
	if n > maxExpanded {
		t.Errorf("%d keys' tables kept, bound %d", n, maxExpanded)
	}
	if !first.Public().Verify(PurposeSigchain, msg, sig) {
		t.Error("the first key's signature refused after its tables were dropped")
	}
}
