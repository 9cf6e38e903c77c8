package message

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/curve25519"

	"kez.lat/kez"
)

// refKey is the message key computed the plain way, with
// golang.org/x/crypto/curve25519 and no cache: the reference that the
// vectors and the cache are checked against.
func refKey(scalar, peer, salt, info []byte) ([]byte, error) {
	shared, err := curve25519.X25519(scalar, peer)
	if err != nil {
		return nil, err
	}
	return hkdfKey(shared, salt, info)
}

// lowOrder are the X25519 public values (u-coordinates) whose product with
// any scalar is zero: the small-order u of the curve and its twist (0, 1,
// the two of order 8, p-1) and the non-canonical encodings p and p+1.
// RFC 7748 masks bit 255, so the encodings with it set in libsodium's list
// reduce to other points and are not low-order here.
var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000", // 0
	"0100000000000000000000000000000000000000000000000000000000000000", // 1
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func TestLowOrderPeerRejected(t *testing.T) {
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range lowOrder {
		peer, _ := hex.DecodeString(h)
		shared, err := x25519(k.X25519(), peer)
		if !errors.Is(err, kez.ErrInvalidKey) || shared != nil {
			t.Errorf("x25519(low-order %s) = %x, %v; want ErrInvalidKey", h[:8], shared, err)
		}
	}
	// The ed25519 keys of small order never become a kez.PublicKey, so the
	// case above cannot arise through Seal or Open.
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	} {
		if _, err := kez.ParsePublicKeyHex(h); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(small order %s) = %v", h[:8], err)
		}
	}
}

func TestSharedSecretSymmetric(t *testing.T) {
	a, _ := kez.GenerateKey(nil)
	b, _ := kez.GenerateKey(nil)
	salt := []byte("salt")
	info := msgInfo(a.Public(), b.Public())
	k1, err1 := deriveKey(a, b.Public(), salt, info)
	k2, err2 := deriveKey(b, a.Public(), salt, info)
	if err1 != nil || err2 != nil || hex.EncodeToString(k1) != hex.EncodeToString(k2) {
		t.Fatalf("keys differ: %x %v / %x %v", k1, err1, k2, err2)
	}
	w, _ := deriveKey(a, b.Public(), salt, keyInfo(wrapLabel, a.Public(), b.Public()))
	if hex.EncodeToString(w) == hex.EncodeToString(k1) {
		t.Error("wrap key equals message key")
	}
}

// TestSharedSecretCache: the cached secret is the plain X25519 of the
// pair, a new salt still gives a new key, and the cache stays bounded.
func TestSharedSecretCache(t *testing.T) {
	a, _ := kez.GenerateKey(nil)
	b, _ := kez.GenerateKey(nil)
	want, err := curve25519.X25519(a.X25519(), b.Public().X25519())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, err := sharedSecret(a, b.Public())
		if err != nil || hex.EncodeToString(s[:]) != hex.EncodeToString(want) {
			t.Fatalf("sharedSecret = %x, %v; want %x", s, err, want)
		}
	}
	info := msgInfo(a.Public(), b.Public())
	salt1, salt2 := make([]byte, SaltSize), make([]byte, SaltSize)
	rand.Read(salt1)
	rand.Read(salt2)
	k1, _ := deriveKey(a, b.Public(), salt1, info)
	k2, _ := deriveKey(a, b.Public(), salt2, info)
	r1, _ := refKey(a.X25519(), b.Public().X25519(), salt1, info)
	if hex.EncodeToString(k1) != hex.EncodeToString(r1) {
		t.Fatal("cached key differs from the plain computation")
	}
	if hex.EncodeToString(k1) == hex.EncodeToString(k2) {
		t.Fatal("two salts gave one key")
	}
	// Another own key with the same peer is another entry.
	c, _ := kez.GenerateKey(nil)
	sc, _ := sharedSecret(c, b.Public())
	if hex.EncodeToString(sc[:]) == hex.EncodeToString(want) {
		t.Fatal("two own keys share a cache entry")
	}
	for range maxCachedPairs + 10 {
		p, _ := kez.GenerateKey(nil)
		if _, err := sharedSecret(a, p.Public()); err != nil {
			t.Fatal(err)
		}
	}
	sharedCache.mu.RLock()
	n := len(sharedCache.m)
	sharedCache.mu.RUnlock()
	if n > maxCachedPairs {
		t.Fatalf("cache holds %d pairs, bound %d", n, maxCachedPairs)
	}
}
