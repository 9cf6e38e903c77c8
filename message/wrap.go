package message

import (
	crand "crypto/rand"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"kez.lat/kez"
)

const (
	// ContentKeySize is the size of a key that [WrapKey] wraps.
	ContentKeySize = 32
	// WrappedKeySize is the size of a wrapped key: the salt, the encrypted
	// key and the tag.
	WrappedKeySize = SaltSize + ContentKeySize + chacha20poly1305.Overhead

	// wrapLabel starts the HKDF info of a wrapping key, so that a wrapping
	// key never equals a message key even for the same salt.
	wrapLabel = "kez-wrap-v1"
)

// WrapKey encrypts the 32-byte content key (a file's) from the identity
// from to the key to, the way a message key is derived:
//
//	salt    = 32 bytes from rand (crypto/rand.Reader if nil)
//	k       = HKDF-SHA256(X25519(from, to), salt, "kez-wrap-v1" || from || to)
//	wrapped = salt || ChaCha20-Poly1305(k, 12 zero bytes, key, ad)
//
// ad binds the wrapped key to its context (what it is the key of, such as a
// file's content address) and may be nil; UnwrapKey needs the same ad. The
// result is not signed: only the two parties can make it, and the file layer
// carries it inside a signed message or manifest. Wrapping for oneself
// (to == from.Public()) works. It returns [ErrClosed] if from is closed.
func WrapKey(from *Identity, to kez.PublicKey, key, ad []byte, rand io.Reader) ([]byte, error) {
	if len(key) != ContentKeySize {
		return nil, fmt.Errorf("wrap key: %w: want %d bytes, got %d", ErrMalformed, ContentKeySize, len(key))
	}
	if to.IsZero() {
		return nil, fmt.Errorf("wrap key: %w: zero recipient key", kez.ErrInvalidKey)
	}
	if rand == nil {
		rand = crand.Reader
	}
	out := make([]byte, SaltSize, WrappedKeySize)
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("read wrap salt: %w", err)
	}
	k, err := from.deriveKey(to, out, keyInfo(wrapLabel, from.Public(), to))
	if err != nil {
		return nil, err
	}
	defer clear(k)
	aead, err := chacha20poly1305.New(k) // copies the key
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	// Single-use key (fresh salt), so the zero nonce is safe; see zeroNonce.
	return aead.Seal(out, zeroNonce[:], key, ad), nil
}

// UnwrapKey returns the content key that from wrapped for me with ad. It
// returns [ErrMalformed] if wrapped is not [WrappedKeySize] bytes and
// [ErrDecrypt] if it does not decrypt (wrong parties, wrong ad, or
// tampered), and [ErrClosed] if me is closed.
func UnwrapKey(me *Identity, from kez.PublicKey, wrapped, ad []byte) ([]byte, error) {
	if len(wrapped) != WrappedKeySize {
		return nil, fmt.Errorf("unwrap key: %w: want %d bytes, got %d", ErrMalformed, WrappedKeySize, len(wrapped))
	}
	if from.IsZero() {
		return nil, fmt.Errorf("unwrap key: %w: zero sender key", kez.ErrInvalidKey)
	}
	salt, ct := wrapped[:SaltSize], wrapped[SaltSize:]
	k, err := me.deriveKey(from, salt, keyInfo(wrapLabel, from, me.Public()))
	if err != nil {
		return nil, err
	}
	defer clear(k)
	aead, err := chacha20poly1305.New(k) // copies the key
	if err != nil {
		return nil, fmt.Errorf("unwrap key: %w", err)
	}
	key, err := aead.Open(nil, zeroNonce[:], ct, ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap key: %w", ErrDecrypt)
	}
	return key, nil
}
