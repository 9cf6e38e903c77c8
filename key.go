package kez

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"filippo.io/edwards25519"
	"github.com/nats-io/nkeys"
)

// KeyPrefix is the text prefix of a primary key: ed25519:<64 lowercase hex>.
const KeyPrefix = "ed25519:"

// PublicKey is an ed25519 public key that passed the entry checks of
// [NewPublicKey]: canonical encoding, not of small order. The zero value is
// not a valid key; use [PublicKey.IsZero] to detect it.
type PublicKey struct {
	k [ed25519.PublicKeySize]byte
}

// NewPublicKey checks raw and returns it as a PublicKey. It returns
// [ErrInvalidKey] if raw is not 32 bytes, not the canonical encoding of a
// curve point, or a point of small order. crypto/ed25519 accepts both of the
// latter, so these checks stand where a key enters the system: a
// non-canonical encoding gives one point two names (two "different" keys for
// one identity), and a small-order key makes signatures that verify for many
// messages.
func NewPublicKey(raw []byte) (PublicKey, error) {
	var k PublicKey
	if len(raw) != ed25519.PublicKeySize {
		return k, fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidKey, ed25519.PublicKeySize, len(raw))
	}
	p, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		return k, fmt.Errorf("%w: not a curve point", ErrInvalidKey)
	}
	// SetBytes accepts y >= p; re-encoding yields the canonical form.
	if subtle.ConstantTimeCompare(p.Bytes(), raw) != 1 {
		return k, fmt.Errorf("%w: non-canonical encoding", ErrInvalidKey)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return k, fmt.Errorf("%w: small-order point", ErrInvalidKey)
	}
	copy(k.k[:], raw)
	return k, nil
}

// ParsePublicKey parses the text form ed25519:<64 lowercase hex>. Errors wrap
// [ErrInvalidKey] and never echo the input.
func ParsePublicKey(s string) (PublicKey, error) {
	h, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: want %s<64 hex>", ErrInvalidKey, KeyPrefix)
	}
	return ParsePublicKeyHex(h)
}

// ParsePublicKeyHex parses the bare 64-character lowercase hex form used in
// URLs, NATS subjects and KV keys.
func ParsePublicKeyHex(h string) (PublicKey, error) {
	if len(h) != 2*ed25519.PublicKeySize || strings.ToLower(h) != h {
		return PublicKey{}, fmt.Errorf("%w: want 64 lowercase hex characters", ErrInvalidKey)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: want 64 lowercase hex characters", ErrInvalidKey)
	}
	return NewPublicKey(raw)
}

// ParseNKey parses a NATS user nkey (U...) into a PublicKey.
func ParseNKey(nkey string) (PublicKey, error) {
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(nkey))
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: not a user nkey", ErrInvalidKey)
	}
	return NewPublicKey(raw)
}

// String returns the text form ed25519:<hex>.
func (k PublicKey) String() string { return KeyPrefix + k.Hex() }

// Hex returns the 64-character lowercase hex form (no prefix).
func (k PublicKey) Hex() string { return hex.EncodeToString(k.k[:]) }

// Bytes returns a copy of the 32 raw bytes.
func (k PublicKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// IsZero reports whether k is the zero value.
func (k PublicKey) IsZero() bool { return k.k == [32]byte{} }

// Equal reports whether k and o are the same key, in constant time.
func (k PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1 }

// NKey returns the key in NATS nkeys encoding (prefix U), the user's NATS
// identity.
func (k PublicKey) NKey() string {
	s, err := nkeys.Encode(nkeys.PrefixByteUser, k.k[:])
	if err != nil {
		panic("kez: nkeys encode of 32 bytes failed: " + err.Error()) // cannot happen for 32 bytes
	}
	return string(s)
}

// Verify reports whether sig is k's signature of msg for purpose p, made
// by [PrivateKey.Sign] with the same purpose.
func (k PublicKey) Verify(p Purpose, msg, sig []byte) bool {
	return k.verify(p.Message(msg), sig)
}

// VerifyMessage is Verify for a message that already starts with p's
// context, as p.Message returns it: it saves Verify's copy of msg. It
// reports false for a message that does not start with that context.
func (k PublicKey) VerifyMessage(p Purpose, m, sig []byte) bool {
	c := p.Context()
	return len(m) >= len(c) && string(m[:len(c)]) == c && k.verify(m, sig)
}

// X25519 returns the Montgomery form of k, the X25519 public key that
// encryption to this identity uses (RFC 7748 birational map).
func (k PublicKey) X25519() []byte {
	p, err := new(edwards25519.Point).SetBytes(k.k[:])
	if err != nil {
		panic("kez: validated key is not a point") // NewPublicKey checked it
	}
	return p.BytesMontgomery()
}

// MarshalText implements encoding.TextMarshaler with the ed25519:<hex> form.
func (k PublicKey) MarshalText() ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("%w: zero key", ErrInvalidKey)
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; see [ParsePublicKey].
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// PrivateKey is an ed25519 key pair held by a client. Its seed never appears
// in a string form, a log or an error.
type PrivateKey struct {
	seed [ed25519.SeedSize]byte
	priv ed25519.PrivateKey
	pub  PublicKey
}

// NewPrivateKey derives the key pair from a 32-byte seed (the value a
// 24-word paper backup encodes). It returns [ErrInvalidKey] if the seed has
// the wrong length or, with negligible probability, yields a key the entry
// checks refuse.
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: seed must be %d bytes", ErrInvalidKey, ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub, err := NewPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	k := &PrivateKey{priv: priv, pub: pub}
	copy(k.seed[:], seed)
	return k, nil
}

// GenerateKey makes a new key pair from rand (crypto/rand.Reader if nil).
func GenerateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("read random seed: %w", err)
	}
	return NewPrivateKey(seed)
}

// Public returns the public half.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Seed returns a copy of the 32-byte seed, for the paper backup and the key
// store only.
func (k *PrivateKey) Seed() []byte { return append([]byte(nil), k.seed[:]...) }

// SeedTextPrefix starts the text form of a seed, "kez-seed-v1 <64 hex>",
// so that a stray file or keyring item is never taken for a key.
const SeedTextPrefix = "kez-seed-v1 "

// MarshalSeed returns the text form of k's seed, [SeedTextPrefix] and 64
// lowercase hex, as key files and keyring items hold it. It is the secret
// itself: callers clear it once written and never log it.
func (k *PrivateKey) MarshalSeed() []byte {
	b := make([]byte, len(SeedTextPrefix)+hex.EncodedLen(len(k.seed)))
	copy(b, SeedTextPrefix)
	hex.Encode(b[len(SeedTextPrefix):], k.seed[:])
	return b
}

// ParseSeed reads the text form of a seed (see [PrivateKey.MarshalSeed]),
// surrounding white space allowed, and returns its key. Errors wrap
// [ErrInvalidKey] and never show b.
func ParseSeed(b []byte) (*PrivateKey, error) {
	h, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(SeedTextPrefix))
	if !ok || len(h) != hex.EncodedLen(ed25519.SeedSize) {
		return nil, fmt.Errorf("%w: not a kez seed", ErrInvalidKey)
	}
	seed := make([]byte, ed25519.SeedSize)
	defer clear(seed)
	if _, err := hex.Decode(seed, h); err != nil {
		return nil, fmt.Errorf("%w: not a kez seed", ErrInvalidKey)
	}
	return NewPrivateKey(seed)
}

// Purpose is what a signature by an identity key means. Every signature
// the key makes is over its purpose's context string followed by the bytes
// signed, and no context is a prefix of another, so a signature made for
// one purpose never verifies for another, whoever chose the bytes: a
// broker's connect nonce cannot become a sigchain event, a registration, a
// manifest or a message. The key has no way to sign raw bytes.
//
// A new kind of signature gets a new Purpose here, never a reuse of one:
// TestPurposesPrefixFree checks the list.
type Purpose uint8

// The purposes of identity-key signatures. Each context ends in a byte
// (NUL or newline) that none of them contains before its end.
const (
	// PurposeNATSAuth signs the broker's connect nonce at sign-in.
	PurposeNATSAuth Purpose = iota + 1
	// PurposeRegistration signs a handle registration
	// ([RegistrationMessage]).
	PurposeRegistration
	// PurposeSigchain signs a sigchain event's payload.
	PurposeSigchain
	// PurposeManifest signs a shared-files manifest's payload.
	PurposeManifest
	// PurposeMessageV1 signs a kez-msg-v1 envelope (read only: new
	// messages are v2).
	PurposeMessageV1
	// PurposeMessageV2 signs a kez-msg-v2 envelope's transcript.
	PurposeMessageV2
)

// purposeContexts holds each purpose's context, by Purpose.
var purposeContexts = [...]string{
	PurposeNATSAuth:     "kez-nats-auth-v1\x00",
	PurposeRegistration: "kez-register-v1\n",
	PurposeSigchain:     "kez-sigchain-v1\x00",
	PurposeManifest:     "kez-manifest-v1\x00",
	PurposeMessageV1:    "kez-msg-v1-sig\x00",
	PurposeMessageV2:    "kez-msg-v2-sig\x00",
}

// Purposes returns every purpose, for tests and audits.
func Purposes() []Purpose {
	ps := make([]Purpose, 0, len(purposeContexts)-1)
	for p := PurposeNATSAuth; int(p) < len(purposeContexts); p++ {
		ps = append(ps, p)
	}
	return ps
}

// Context returns the context string that starts every message signed for
// p, its final NUL or newline included. It panics for a value that is not
// one of the Purpose constants.
func (p Purpose) Context() string {
	if p == 0 || int(p) >= len(purposeContexts) {
		panic(fmt.Sprintf("kez: unknown signature purpose %d", p))
	}
	return purposeContexts[p]
}

// String returns the context without its final byte ("kez-sigchain-v1").
func (p Purpose) String() string {
	if p == 0 || int(p) >= len(purposeContexts) {
		return fmt.Sprintf("Purpose(%d)", p)
	}
	c := purposeContexts[p]
	return c[:len(c)-1]
}

// Message returns the exact bytes a signature for p over msg is made on:
// p's context followed by msg.
func (p Purpose) Message(msg []byte) []byte {
	c := p.Context()
	b := make([]byte, 0, len(c)+len(msg))
	return append(append(b, c...), msg...)
}

// Sign signs msg for purpose p: the signature is over p's context followed
// by msg (see [Purpose]).
func (k *PrivateKey) Sign(p Purpose, msg []byte) []byte {
	return sign(k.priv, p.Message(msg))
}

// X25519 returns the X25519 private scalar derived from the seed:
// SHA-512(seed)[0:32], clamped. It is the scalar ed25519 itself uses, so
// X25519(priv, basepoint) equals [PublicKey.X25519] of the public half.
// The caller clears the result when done with it.
func (k *PrivateKey) X25519() []byte {
	h := sha512.Sum512(k.seed[:])
	// The second half of the hash is the ed25519 nonce prefix, a secret
	// too: clear the whole output, not just what is returned.
	defer clear(h[:])
	s := append([]byte(nil), h[:32]...)
	s[0] &= 248
	s[31] &= 127
	s[31] |= 64
	return s
}

// Wipe clears the key's seed and private key bytes; the public half stays.
// Afterwards the key signs nothing valid and [PrivateKey.Seed] returns
// zeros: call it when the key is no longer needed, and use the key no
// more. It is best effort, as far as Go allows: the garbage collector may
// have copied the bytes before, and values derived from the key (an
// X25519 scalar, a libp2p or NATS copy) are cleared by their owners.
func (k *PrivateKey) Wipe() {
	clear(k.seed[:])
	clear(k.priv)
}

// String hides the key material.
func (k *PrivateKey) String() string { return "kez.PrivateKey(" + k.pub.String() + ")" }

// Format makes every fmt verb, %#v and %d included, print [PrivateKey.String]
// for a key or a pointer to one: fmt's default struct printing would show
// the seed.
func (k PrivateKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }
