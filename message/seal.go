package message

import (
	crand "crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"kez.lat/kez"
)

// zeroNonce is the ChaCha20-Poly1305 nonce of every kez-msg message and
// every wrapped key. A fixed nonce is safe only because no key is ever used
// twice: each key comes out of HKDF with a fresh 32-byte random salt, so two
// messages (or wraps) between the same parties get independent keys.
var zeroNonce [chacha20poly1305.NonceSize]byte

// Seal encrypts pt from the identity from to the key to as a kez-msg-v2
// envelope, timestamps it with now, and signs it. It reads the 16-byte id
// and then the 32-byte salt from rand (crypto/rand.Reader if nil). It
// returns the envelope and its wire form; [ErrTooLarge] if the wire form
// would be longer than [MaxSize]; [ErrMalformed] for a zero plaintext or a
// time before 1970; [ErrClosed] if from is closed.
func Seal(from *Identity, to kez.PublicKey, pt Plaintext, now time.Time, rand io.Reader) (Envelope, []byte, error) {
	if rand == nil {
		rand = crand.Reader
	}
	e := Envelope{Version: Version}
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

// seal fills in the key commitment (v2), the ciphertext and the signature
// of e, whose other fields are set, and returns its wire form. Seal makes
// only v2; the vector tests make v1 envelopes with it too.
func (e *Envelope) seal(from *Identity, pt Plaintext) ([]byte, error) {
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
	key, err := from.deriveKey(e.To, e.Salt[:], e.keyInfo())
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if e.Version != Version1 {
		e.Commitment = keyCommitment(key)
	}
	aead, err := chacha20poly1305.New(key) // copies the key
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	ad := e.associatedData()
	e.Ciphertext = aead.Seal(nil, zeroNonce[:], pt.raw, ad)
	signer, err := from.signer()
	if err != nil {
		return nil, err
	}
	copy(e.Sig[:], signer.Sign(e.format().purpose, e.signedMessage(ad)))
	return e.Marshal()
}

// Open checks and decrypts e, a v2 or v1 envelope, for the recipient me,
// sent by sender, the key the caller has pinned for the contact that e
// claims to come from. In order, it returns [ErrMalformed] if e is not a
// well-formed envelope, [ErrNotForMe] if e is addressed to another key,
// [ErrSenderMismatch] if e's sender is not sender, [kez.ErrBadSignature]
// if the signature does not verify, [ErrClosed] if me is closed,
// [ErrDecrypt] if the key commitment (v2) does not match the key or the
// ciphertext does not decrypt, and [ErrMalformed] if the plaintext is not
// a valid plaintext. A plaintext of a type this version does not know is
// returned without error; see [Plaintext.Known].
func (e Envelope) Open(me *Identity, sender kez.PublicKey) (Plaintext, error) {
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
	if err := e.Verify(); err != nil {
		return Plaintext{}, err
	}
	ad := e.associatedData()
	key, err := me.deriveKey(sender, e.Salt[:], e.keyInfo())
	if err != nil {
		return Plaintext{}, err
	}
	defer clear(key)
	// In v2 the signed kc must be this key's commitment: then the key, and
	// so the plaintext, is the one the sender fixed by signing (see
	// keyCommitment), and revealing the key proves the content to anyone.
	if e.Version != Version1 {
		kc := keyCommitment(key)
		if subtle.ConstantTimeCompare(kc[:], e.Commitment[:]) != 1 {
			return Plaintext{}, fmt.Errorf("%w: key commitment does not match", ErrDecrypt)
		}
	}
	aead, err := chacha20poly1305.New(key) // copies the key
	if err != nil {
		return Plaintext{}, fmt.Errorf("message: %w", err)
	}
	raw, err := aead.Open(nil, zeroNonce[:], e.Ciphertext, ad)
	if err != nil {
		return Plaintext{}, ErrDecrypt
	}
	return newPlaintext(raw) // raw is ours: no copy
}

// keyInfo returns the HKDF info of e's message key: its version's label
// ("kez-msg-v2" or "kez-msg-v1") || from (32 bytes) || to (32 bytes).
func (e *Envelope) keyInfo() []byte {
	return keyInfo(e.format().label, e.From, e.To)
}

// Verify checks that e is well-formed and signed by the key it names as
// its sender, From. It needs no private key and no cache: the home
// server's door runs it on every message before storing it. It says
// nothing of whether From is the key a recipient pinned; [Envelope.Open]
// checks that, then this.
func (e Envelope) Verify() error {
	if err := e.check(); err != nil {
		return err
	}
	// The context and the transcript in one buffer: the envelope is
	// copied once, not twice (this check is most of the door's work).
	p, ad := e.format().purpose, e.associatedData()
	m := append(make([]byte, 0, len(p.Context())+e.signedMessageLen(ad)), p.Context()...)
	if !e.From.VerifyMessage(p, e.appendSignedMessage(m, ad), e.Sig[:]) {
		return fmt.Errorf("message: %w", kez.ErrBadSignature)
	}
	return nil
}

func keyInfo(label string, from, to kez.PublicKey) []byte {
	b := make([]byte, 0, len(label)+64)
	b = append(b, label...)
	b = append(b, from.Bytes()...)
	b = append(b, to.Bytes()...)
	return b
}
