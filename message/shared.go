package message

import (
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"kez.lat/kez"
)

// maxCachedPairs bounds the shared-secret cache: a client talks to its
// contacts, a few hundred pairs at most; past the bound an arbitrary entry
// makes room.
const maxCachedPairs = 1024

// pairID names a cache entry: the own public key, then the peer's.
type pairID [64]byte

// sharedCache holds the X25519 shared secret of each (own key, peer key)
// pair this process has used.
//
// Reusing the shared secret is safe: it is only ever the HKDF input keying
// material, and each message (or wrapped key) draws a fresh 32-byte random
// salt, so every AEAD key that comes out of HKDF is still used once, as
// kez-msg-v1 requires; the wire format and the keys are exactly those of
// computing X25519 each time. It saves the two scalar multiplications and
// the Edwards-to-Montgomery conversion per message (~60% of Seal and Open
// before this cache).
//
// The entry is keyed by the own public key rather than the private key:
// the public key determines the clamped scalar (two clamped scalars differ
// by 8·d with |d| < 2^251, below the prime group order, so they give the
// same public key only if they are equal), so only a caller holding the
// same scalar can hit an entry. The secrets live in process memory next to the seed they come
// from, which the process already holds; they are never written anywhere.
var sharedCache struct {
	mu sync.RWMutex
	m  map[pairID]*[32]byte
}

// sharedSecret returns X25519(me, peer) from the cache, or computes and
// caches it. It returns [kez.ErrInvalidKey] for a low-order peer point
// (never cached).
func sharedSecret(me *kez.PrivateKey, peer kez.PublicKey) (*[32]byte, error) {
	var id pairID
	own := me.Public()
	copy(id[:32], own.Bytes())
	copy(id[32:], peer.Bytes())
	sharedCache.mu.RLock()
	s, ok := sharedCache.m[id]
	sharedCache.mu.RUnlock()
	if ok {
		return s, nil
	}
	scalar := me.X25519()
	shared, err := x25519(scalar, peer.X25519())
	clear(scalar)
	if err != nil {
		return nil, err
	}
	s = new([32]byte)
	copy(s[:], shared)
	clear(shared)
	sharedCache.mu.Lock()
	defer sharedCache.mu.Unlock()
	if sharedCache.m == nil {
		sharedCache.m = make(map[pairID]*[32]byte)
	}
	if len(sharedCache.m) >= maxCachedPairs {
		for k := range sharedCache.m {
			delete(sharedCache.m, k)
			break
		}
	}
	sharedCache.m[id] = s
	return s, nil
}

// x25519 returns X25519(scalar, peer) with crypto/ecdh: one scalar
// multiplication (golang.org/x/crypto/curve25519.X25519 also computes the
// scalar's public key). It returns [kez.ErrInvalidKey] for a low-order
// peer point, whose product with any scalar is all zeros.
func x25519(scalar, peer []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(scalar)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 scalar", kez.ErrInvalidKey)
	}
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 point", kez.ErrInvalidKey)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		// crypto/ecdh fails only for a low-order point (all-zero output).
		return nil, fmt.Errorf("%w: X25519 with a low-order point", kez.ErrInvalidKey)
	}
	// crypto/ecdh already refuses an all-zero result; the check is
	// repeated so that the invariant (a low-order peer point must not yield
	// a key anyone can compute) does not rest on a library detail. kez
	// public keys cannot be of small order, and the clamped scalar (a
	// multiple of 8) removes any small-order component, so this is never
	// reached through a kez.PublicKey.
	var zero [32]byte
	if subtle.ConstantTimeCompare(shared, zero[:]) == 1 {
		return nil, fmt.Errorf("%w: all-zero X25519 shared secret", kez.ErrInvalidKey)
	}
	return shared, nil
}

// deriveKey returns the single-use AEAD key HKDF-SHA256(ikm = X25519(me,
// peer), salt, info), 32 bytes. The shared secret is the same on both
// sides: the sender's scalar with the recipient's point, or the
// recipient's scalar with the sender's.
func deriveKey(me *kez.PrivateKey, peer kez.PublicKey, salt, info []byte) ([]byte, error) {
	shared, err := sharedSecret(me, peer)
	if err != nil {
		return nil, err
	}
	return hkdfKey(shared[:], salt, info)
}

// hkdfKey returns HKDF-SHA256(ikm, salt, info), 32 bytes.
func hkdfKey(ikm, salt, info []byte) ([]byte, error) {
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, salt, info), key); err != nil {
		return nil, fmt.Errorf("hkdf: %w", err) // cannot happen for 32 bytes
	}
	return key, nil
}
