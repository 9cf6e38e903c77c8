package filecrypt

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// KeySize is the size of a content key.
const KeySize = 32

// Key is the content key of one file: 32 random bytes, made by [NewKey].
// Its String form never shows the bytes.
type Key struct{ k [KeySize]byte }

// NewKey returns a fresh random key read from r (crypto/rand.Reader if nil).
func NewKey(r io.Reader) (Key, error) {
	if r == nil {
		r = rand.Reader
	}
	var k Key
	if _, err := io.ReadFull(r, k.k[:]); err != nil {
		return Key{}, fmt.Errorf("new content key: %w", err)
	}
	return k, nil
}

// KeyFromBytes returns the key whose bytes are b, which must be [KeySize]
// bytes long.
func KeyFromBytes(b []byte) (Key, error) {
	var k Key
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("content key: %w: want %d bytes, got %d", message.ErrMalformed, KeySize, len(b))
	}
	copy(k.k[:], b)
	return k, nil
}

// Bytes returns a copy of the key's bytes.
func (k Key) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// IsZero reports whether k is the zero Key (never a key NewKey returns in
// practice).
func (k Key) IsZero() bool { return k.k == [KeySize]byte{} }

// Equal reports whether k and o are the same key, in constant time.
func (k Key) Equal(o Key) bool { return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1 }

// String returns a fixed placeholder, so that a key printed by mistake
// shows nothing.
func (k Key) String() string { return "filecrypt.Key(redacted)" }

// Format prints the same placeholder as String for every verb, %x included.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// wrapAD is the associated data of a wrapped content key: the format and
// the content address (BLAKE3) of the encrypted blob. A wrapped key
// therefore opens only for the blob it was made for: a sender's wrapped key
// cannot be replayed in an announcement of another blob.
func wrapAD(blob [32]byte) []byte {
	return append([]byte("kez-file-v1\n"), blob[:]...)
}

// Wrap encrypts k from the key pair from to the key to for the encrypted
// blob whose content address is blob, with [message.WrapKey]; rand is
// crypto/rand.Reader if nil. The result is [message.WrappedKeySize] bytes.
//
// A file is wrapped once per recipient, so the X25519 shared secret is
// computed each time and cleared on return, not kept in an
// [message.Identity].
func Wrap(from *kez.PrivateKey, to kez.PublicKey, k Key, blob [32]byte, rand io.Reader) ([]byte, error) {
	id := message.NewIdentity(from)
	defer id.Close()
	return message.WrapKey(id, to, k.k[:], wrapAD(blob), rand)
}

// Unwrap returns the content key that from wrapped for me with [Wrap] for
// blob. It returns [message.ErrMalformed] or [message.ErrDecrypt] as
// [message.UnwrapKey] does.
func Unwrap(me *kez.PrivateKey, from kez.PublicKey, wrapped []byte, blob [32]byte) (Key, error) {
	id := message.NewIdentity(me)
	defer id.Close()
	b, err := message.UnwrapKey(id, from, wrapped, wrapAD(blob))
	if err != nil {
		return Key{}, err
	}
	defer clear(b)
	return KeyFromBytes(b)
}
