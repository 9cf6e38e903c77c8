package message

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"kez.lat/kez"
)

// zeroNonce is the ChaCha20-Poly1305 nonce of every kez-msg-v1 message and
// every wrapped key. A fixed nonce is safe only because no key is ever used
// twice: each key comes out of HKDF with a fresh 32-byte random salt, so two
// messages (or wraps) between the same parties get independent keys.
var zeroNonce [chacha20poly1305.NonceSize]byte

// Seal encrypts pt from the key pair from to the key to, timestamps it with
// now, and signs it. It reads the 16-byte id and then the 32-byte salt from
// rand (crypto/rand.Reader if nil). It returns the envelope and its wire
// form; [ErrTooLarge] if the wire form would be longer than [MaxSize];
// [ErrMalformed] for a zero plaintext or a time before 1970.
func Seal(from *kez.PrivateKey, to kez.PublicKey, pt Plaintext, now time.Time, rand io.Reader) (Envelope, []byte, error) {
	if rand == nil {
		rand = cryptoRand
	}
	var e Envelope
	if _, err := io.ReadFull(rand, e.ID[:]); err != nil {
		return Envelope{}, nil, fmt.Errorf("read message id: %w", err)
	}
	if _, err := io.ReadFull(rand, e.Salt[:]); err != nil {
		return Envelope{}, nil, fmt.Errorf("read message salt: %w", err)
	}
	e.From, e.To, e.Timestamp = from.Public(), to, now.Unix()
	wire, err := e.seal(from, pt)
	if err != nil {
		return Envelope{}, nil, err
	}
	return e, wire, nil
}

var cryptoRand = rand.Reader

// seal fills in the ciphertext and the signature of e, whose other fields
// are set, and returns its wire form.
func (e *Envelope) seal(from *kez.PrivateKey, pt Plaintext) ([]byte, error) {
	switch {
	case pt.IsZero():
		return nil, fmt.Errorf("%w: zero plaintext", ErrMalformed)
	case e.To.IsZero():
		return nil, fmt.Errorf("%w: zero recipient key", kez.ErrInvalidKey)
	case e.Timestamp < 0:
		return nil, fmt.Errorf("%w: timestamp before 1970", ErrMalformed)
	}
	// Refuse early what cannot fit, before any crypto.
	if len(pt.raw) > MaxSize {
		return nil, fmt.Errorf("%w: plaintext of %d bytes", ErrTooLarge, len(pt.raw))
	}
	key, err := deriveKey(from, e.To, e.Salt[:], msgInfo(e.From, e.To))
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key) // copies the key
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	h := e.header()
	e.Ciphertext = aead.Seal(nil, zeroNonce[:], pt.raw, h)
	copy(e.Sig[:], from.Sign(kez.PurposeMessageV1, e.signedMessage(h)))
	return e.Marshal()
}

// Open checks and decrypts e for the recipient me, sent by sender, the key
// the caller has pinned for the contact that e claims to come from. In
// order, it returns [ErrMalformed] if e is not a well-formed envelope,
// [ErrNotForMe] if e is addressed to another key, [ErrSenderMismatch] if e's
// sender is not sender, [kez.ErrBadSignature] if the signature does not
// verify, [ErrDecrypt] if the ciphertext does not decrypt, and
// [ErrMalformed] if the plaintext is not a valid plaintext. A plaintext of a
// type this version does not know is returned without error; see
// [Plaintext.Known].
func (e Envelope) Open(me *kez.PrivateKey, sender kez.PublicKey) (Plaintext, error) {
	if err := e.check(); err != nil {
		return Plaintext{}, err
	}
	if !e.To.Equal(me.Public()) {
		return Plaintext{}, ErrNotForMe
	}
	if sender.IsZero() || !e.From.Equal(sender) {
		return Plaintext{}, ErrSenderMismatch
	}
	// The signature is checked before any decryption, so nothing from an
	// unauthenticated sender reaches the AEAD or the JSON parser.
	h := e.header()
	if !sender.Verify(kez.PurposeMessageV1, e.signedMessage(h), e.Sig[:]) {
		return Plaintext{}, fmt.Errorf("message: %w", kez.ErrBadSignature)
	}
	key, err := deriveKey(me, sender, e.Salt[:], msgInfo(e.From, e.To))
	if err != nil {
		return Plaintext{}, err
	}
	aead, err := chacha20poly1305.New(key) // copies the key
	clear(key)
	if err != nil {
		return Plaintext{}, fmt.Errorf("message: %w", err)
	}
	raw, err := aead.Open(nil, zeroNonce[:], e.Ciphertext, h)
	if err != nil {
		return Plaintext{}, ErrDecrypt
	}
	return newPlaintext(raw) // raw is ours: no copy
}

// msgInfo returns the HKDF info of a message key:
// "kez-msg-v1" || from (32 bytes) || to (32 bytes).
func msgInfo(from, to kez.PublicKey) []byte {
	return keyInfo(headerLabel, from, to)
}

func keyInfo(label string, from, to kez.PublicKey) []byte {
	b := make([]byte, 0, len(label)+64)
	b = append(b, label...)
	b = append(b, from.Bytes()...)
	b = append(b, to.Bytes()...)
	return b
}
