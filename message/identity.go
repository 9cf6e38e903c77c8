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

// maxCached bounds each cache of an [Identity]: a client talks to its
// contacts, a few hundred at most; past the bound an arbitrary entry makes
// room (and a shared secret that leaves is cleared).
const maxCached = 1024

// Identity is one's own side of kez-msg and kez-wrap: a key pair, and what
// makes its repeated use fast: the X25519 scalar, the X25519 shared secret
// with each peer it has sealed to or opened from, and the peer keys
// [Identity.Parse] has accepted. Like age's X25519Identity, it is a value
// that owns its precomputed state, so that no secret lives in a package
// variable and [Identity.Close] can clear every one of them.
//
// Keeping the shared secret is safe: it is only ever the HKDF input keying
// material, and each message (or wrapped key) draws a fresh 32-byte random
// salt, so every AEAD key that comes out of HKDF is still used once; the
// wire format and the keys are exactly those of computing X25519 each time.
// It saves the SHA-512, the Edwards-to-Montgomery conversion and the
// scalar multiplication per message (~60% of Seal and Open without it).
//
// An Identity is safe for concurrent use. It does not own the
// [kez.PrivateKey] it was made from: Close clears the Identity's own
// secrets, and the key's owner wipes the key ([kez.PrivateKey.Wipe]).
type Identity struct {
	pub     kez.PublicKey
	pubText string // pub.String(), which Parse meets in every "to"

	mu     sync.RWMutex
	key    *kez.PrivateKey // nil once closed
	scalar [32]byte        // SHA-512(seed)[0:32], clamped
	shared map[kez.PublicKey]*[32]byte
	keys   Keys // the peer keys Parse accepted
}

// NewIdentity returns the Identity of key k. It panics if k is nil.
func NewIdentity(k *kez.PrivateKey) *Identity {
	if k == nil {
		panic("message: NewIdentity of a nil key")
	}
	id := &Identity{pub: k.Public(), pubText: k.Public().String(), key: k}
	s := k.X25519()
	copy(id.scalar[:], s)
	clear(s)
	return id
}

// String names the identity by its public key.
func (id *Identity) String() string { return "message.Identity(" + id.pubText + ")" }

// Format makes every fmt verb, %#v and %+v included, print
// [Identity.String]: fmt's default struct printing would show the
// scalar, which is the ed25519 signing secret as much as the seed is.
func (id *Identity) Format(f fmt.State, _ rune) { io.WriteString(f, id.String()) }

// Public returns the identity's public key.
func (id *Identity) Public() kez.PublicKey { return id.pub }

// Close clears the identity's secrets (the X25519 scalar and every cached
// shared secret) and forgets the private key; afterwards Seal, Open,
// WrapKey and UnwrapKey with it return [ErrClosed]. Close is idempotent.
//
// Clearing is best effort, as far as Go allows: the garbage collector may
// have copied the bytes before, and crypto/ecdh and the AEAD keep copies of
// their keys that are not ours to clear.
func (id *Identity) Close() {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.key = nil
	clear(id.scalar[:])
	for p, s := range id.shared {
		clear(s[:])
		delete(id.shared, p)
	}
	id.keys.clear()
}

// signer returns the private key, or [ErrClosed].
func (id *Identity) signer() (*kez.PrivateKey, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.key == nil {
		return nil, ErrClosed
	}
	return id.key, nil
}

// sharedSecret writes X25519(own scalar, peer) into dst, from the cache or
// computed and cached. It returns [ErrClosed] after Close and
// [kez.ErrInvalidKey] for a low-order peer point (never cached). dst is a
// copy, so that Close may clear the cache while a caller still derives.
func (id *Identity) sharedSecret(peer kez.PublicKey, dst *[32]byte) error {
	id.mu.RLock()
	closed := id.key == nil
	s, ok := id.shared[peer]
	if ok {
		*dst = *s
	}
	scalar := id.scalar
	id.mu.RUnlock()
	defer clear(scalar[:])
	if closed {
		return ErrClosed
	}
	if ok {
		return nil
	}
	shared, err := x25519(scalar[:], peer.X25519())
	if err != nil {
		return err
	}
	copy(dst[:], shared)
	clear(shared)

	id.mu.Lock()
	defer id.mu.Unlock()
	if id.key == nil { // closed meanwhile: keep and use nothing
		clear(dst[:])
		return ErrClosed
	}
	if id.shared == nil {
		id.shared = make(map[kez.PublicKey]*[32]byte)
	}
	if len(id.shared) >= maxCached {
		for p, old := range id.shared {
			clear(old[:])
			delete(id.shared, p)
			break
		}
	}
	c := new([32]byte)
	*c = *dst
	id.shared[peer] = c
	return nil
}

// parseKey is [kez.ParsePublicKey] with the identity's cache ([Keys]): a
// client hears from few keys. A closed identity caches nothing.
func (id *Identity) parseKey(s string) (kez.PublicKey, error) {
	if s == id.pubText {
		return id.pub, nil
	}
	id.mu.RLock()
	closed := id.key == nil
	id.mu.RUnlock()
	if closed {
		return kez.ParsePublicKey(s)
	}
	return id.keys.ParseKey(s)
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

// deriveKey returns the single-use AEAD key HKDF-SHA256(ikm = X25519(own,
// peer), salt, info), 32 bytes, which the caller clears after use. The
// shared secret is the same on both sides: the sender's scalar with the
// recipient's point, or the recipient's scalar with the sender's.
func (id *Identity) deriveKey(peer kez.PublicKey, salt, info []byte) ([]byte, error) {
	var shared [32]byte
	defer clear(shared[:])
	if err := id.sharedSecret(peer, &shared); err != nil {
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
