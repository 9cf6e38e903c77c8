package message

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"kez.lat/kez"
	"kez.lat/kez/strictjson"
)

const (
	// Version is the "v" of the envelopes Seal writes: kez-msg-v2.
	Version = 2
	// Version1 is the "v" of kez-msg-v1 envelopes, which Parse and Open
	// still read, so that messages waiting in inboxes across the upgrade
	// are delivered. Reading them goes in a later release.
	Version1 = 1
	// MaxSize is the largest envelope Parse accepts and Seal produces, in
	// bytes of JSON. Messages are small; files never travel as messages.
	MaxSize = 64 << 10
	// IDSize is the length of a message id.
	IDSize = 16
	// SaltSize is the length of the per-message HKDF salt.
	SaltSize = 32
	// CommitmentSize is the length of a v2 key commitment, "kc".
	CommitmentSize = sha256.Size
)

// format is what differs between the versions of the envelope.
type format struct {
	// label is the start of the HKDF info of the message key ("kez-msg-v1"
	// || from || to); in v1 it also starts the header, in v2 it starts the
	// associated data, followed by a NUL.
	label   string
	purpose kez.Purpose
	fields  []string // the members, in the order Marshal writes them
}

var formats = [...]format{
	Version1: {"kez-msg-v1", kez.PurposeMessageV1, []string{"v", "id", "from", "to", "ts", "salt", "ct", "sig"}},
	Version:  {"kez-msg-v2", kez.PurposeMessageV2, []string{"v", "id", "from", "to", "ts", "salt", "kc", "ct", "sig"}},
}

// kcLabel starts the input of the key commitment; see [keyCommitment].
const kcLabel = "kez-msg-v2-kc\x00"

// b64 is standard padded base64 (RFC 4648 §4), strict about padding bits.
var b64 = base64.StdEncoding.Strict()

// ID is the random 16-byte id of a message, chosen by the sender.
type ID [IDSize]byte

// String returns the id in standard padded base64, its form in the
// envelope and the v1 header.
func (id ID) String() string { return b64.EncodeToString(id[:]) }

// Envelope is one kez-msg message as it travels: who sent it to whom and
// when, the salt of its key, in v2 the commitment to that key, the
// ciphertext and the sender's signature. The fields are what the sender
// claims until [Envelope.Open] succeeds.
type Envelope struct {
	Version    int // [Version] (2) or [Version1]
	ID         ID
	From       kez.PublicKey
	To         kez.PublicKey
	Timestamp  int64 // unix seconds, as set by the sender
	Salt       [SaltSize]byte
	Commitment [CommitmentSize]byte // v2 "kc"; zero in v1
	Ciphertext []byte               // ChaCha20-Poly1305 output, tag included
	Sig        [ed25519.SignatureSize]byte
}

// Time returns the sender's timestamp.
func (e Envelope) Time() time.Time { return time.Unix(e.Timestamp, 0) }

// DedupKey returns the key under which a recipient remembers having stored
// this message: the sender's hex key and the id in hex, "<64 hex>-<32 hex>"
// (safe in file names, NATS subjects and KV keys). The id is scoped by the
// sender so that one sender cannot suppress another's message by reusing
// its id. Use it only after Open succeeded: before that, From is a claim.
func (e Envelope) DedupKey() string {
	return e.From.Hex() + "-" + hex.EncodeToString(e.ID[:])
}

// format returns e's version parameters, which check has accepted.
func (e *Envelope) format() format { return formats[e.Version] }

// associatedData returns the associated data of the AEAD.
//
// v1, the header: "kez-msg-v1\n" id "\n" from "\n" to "\n" ts, each field
// in its JSON text form (Parse accepts only canonical forms, so the header
// computed from the parsed fields is the text the sender put in the JSON).
//
// v2: "kez-msg-v2\x00" || id (16) || from (32) || to (32) || ts (8,
// big-endian), 99 bytes, every field at a fixed offset.
func (e *Envelope) associatedData() []byte {
	label := e.format().label
	if e.Version == Version1 {
		b := make([]byte, 0, 200)
		b = append(b, label+"\n"...)
		b = append(b, e.ID.String()...)
		b = append(b, '\n')
		b = append(b, e.From.String()...)
		b = append(b, '\n')
		b = append(b, e.To.String()...)
		b = append(b, '\n')
		return strconv.AppendInt(b, e.Timestamp, 10)
	}
	b := make([]byte, 0, len(label)+1+fixedSize)
	b = append(b, label...)
	b = append(b, 0)
	return e.appendFixed(b)
}

// fixedSize is the length of the fields [Envelope.appendFixed] writes.
const fixedSize = IDSize + 32 + 32 + 8

// appendFixed appends the v2 fixed-size header fields: id || from || to ||
// ts as 8 bytes big-endian.
func (e *Envelope) appendFixed(b []byte) []byte {
	b = append(b, e.ID[:]...)
	b = append(b, e.From.Bytes()...)
	b = append(b, e.To.Bytes()...)
	return binary.BigEndian.AppendUint64(b, uint64(e.Timestamp))
}

// signedMessage returns the bytes the sender signs after the context of
// e's purpose; ad is e.associatedData().
//
// v1 ([kez.PurposeMessageV1], "kez-msg-v1-sig\x00"): header || salt || ct.
// This is not an injective encoding: the header ends in the decimal ts, of
// no fixed length (see docs/kez-msg-v1.md).
//
// v2 ([kez.PurposeMessageV2], "kez-msg-v2-sig\x00"), the transcript:
// id (16) || from (32) || to (32) || ts (8) || salt (32) || kc (32) || ct.
// Every field but the last has a fixed length, so the transcript splits
// back into the fields in exactly one way: two envelopes with the same
// transcript are the same envelope, and no shift of bytes between fields
// keeps a signature valid.
func (e *Envelope) signedMessage(ad []byte) []byte {
	return e.appendSignedMessage(make([]byte, 0, e.signedMessageLen(ad)), ad)
}

// signedMessageLen is the length of signedMessage(ad).
func (e *Envelope) signedMessageLen(ad []byte) int {
	if e.Version == Version1 {
		return len(ad) + SaltSize + len(e.Ciphertext)
	}
	return fixedSize + SaltSize + CommitmentSize + len(e.Ciphertext)
}

// appendSignedMessage appends signedMessage(ad) to b.
func (e *Envelope) appendSignedMessage(b, ad []byte) []byte {
	if e.Version == Version1 {
		b = append(b, ad...)
		b = append(b, e.Salt[:]...)
		return append(b, e.Ciphertext...)
	}
	b = e.appendFixed(b)
	b = append(b, e.Salt[:]...)
	b = append(b, e.Commitment[:]...)
	return append(b, e.Ciphertext...)
}

// keyCommitment returns kc = SHA-256("kez-msg-v2-kc\x00" || key), the v2
// commitment to the message key. ChaCha20-Poly1305 does not commit to its
// key (a sender can craft one ciphertext that opens under two keys to two
// plaintexts); the signature covers kc, and SHA-256 is collision
// resistant, so the signed envelope fixes one key, and with it the one
// plaintext ct decrypts to. It commits to the key, not to the plaintext: a
// hash of the plaintext would let anyone holding the envelope (the broker)
// confirm a guess of a short message.
func keyCommitment(key []byte) [CommitmentSize]byte {
	h := sha256.New()
	h.Write([]byte(kcLabel))
	h.Write(key)
	var kc [CommitmentSize]byte
	h.Sum(kc[:0])
	return kc
}

// check reports whether e could have come out of Parse.
func (e *Envelope) check() error {
	switch {
	case e.Version != Version1 && e.Version != Version:
		return fmt.Errorf("%w: unsupported version %d", ErrMalformed, e.Version)
	case e.Version == Version1 && e.Commitment != [CommitmentSize]byte{}:
		return fmt.Errorf("%w: key commitment in a v1 envelope", ErrMalformed)
	case e.From.IsZero() || e.To.IsZero():
		return fmt.Errorf("%w: missing key", ErrMalformed)
	case e.Timestamp < 0:
		return fmt.Errorf("%w: negative timestamp", ErrMalformed)
	case len(e.Ciphertext) < chacha20poly1305.Overhead:
		return fmt.Errorf("%w: ciphertext shorter than its tag", ErrMalformed)
	}
	return nil
}

// Marshal returns the wire form of e: compact JSON with the members in the
// order v, id, from, to, ts, salt, kc (v2 only), ct, sig.
func (e Envelope) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	// Everything but ct fits in marshalFixed; the base64 is appended in
	// place (no string of it made and copied).
	b := make([]byte, 0, marshalFixed+b64.EncodedLen(len(e.Ciphertext)))
	// Every value is base64, lowercase hex or digits: nothing to escape.
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	b = append(b, `,"id":"`...)
	b = b64.AppendEncode(b, e.ID[:])
	b = append(b, `","from":"`...)
	b = append(b, e.From.String()...)
	b = append(b, `","to":"`...)
	b = append(b, e.To.String()...)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, e.Timestamp, 10)
	b = append(b, `,"salt":"`...)
	b = b64.AppendEncode(b, e.Salt[:])
	if e.Version != Version1 {
		b = append(b, `","kc":"`...)
		b = b64.AppendEncode(b, e.Commitment[:])
	}
	b = append(b, `","ct":"`...)
	b = b64.AppendEncode(b, e.Ciphertext)
	b = append(b, `","sig":"`...)
	b = b64.AppendEncode(b, e.Sig[:])
	b = append(b, `"}`...)
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxSize)
	}
	return b, nil
}

// marshalFixed bounds the length of an envelope's wire form without its
// ct's base64: the member names and punctuation, two keys of 72 bytes, a
// timestamp of at most 19 digits and the base64 of id, salt, kc and sig
// (~430 bytes).
const marshalFixed = 512

// MarshalJSON implements json.Marshaler with [Envelope.Marshal].
func (e Envelope) MarshalJSON() ([]byte, error) { return e.Marshal() }

// UnmarshalJSON implements json.Unmarshaler with [Parse].
func (e *Envelope) UnmarshalJSON(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	*e = p
	return nil
}

// Parse decodes the wire form of an envelope, v2 or v1, strictly: at most
// [MaxSize] bytes ([ErrTooLarge]); one JSON object whose member v is 2 or
// 1, with exactly the members of that version (v, id, from, to, ts, salt,
// kc, ct and sig in v2; the same without kc in v1) in any order, none
// repeated; id, salt, kc and sig are 16, 32, 32 and 64 bytes and every
// byte string is canonical standard padded base64; from and to are valid
// keys in the ed25519:<lowercase hex> form (else the error also matches
// [kez.ErrInvalidKey]); ts is a non-negative integer written without sign,
// fraction or exponent; ct is at least the 16-byte tag. Anything else is
// [ErrMalformed]. Parse checks no signature: see [Envelope.Open]. It needs
// no key, so a server can parse (and verify the signature of) what it
// relays; a recipient parses with [Identity.Parse], which is faster.
func Parse(wire []byte) (Envelope, error) { return parse(wire, kez.ParsePublicKey) }

// Parse is [Parse] with the identity's cache of the keys it has accepted
// (a key is checked once, not in every message).
func (id *Identity) Parse(wire []byte) (Envelope, error) { return parse(wire, id.parseKey) }

// parse is Parse with parseKey checking the keys.
func parse(wire []byte, parseKey func(string) (kez.PublicKey, error)) (Envelope, error) {
	var e Envelope
	if len(wire) > MaxSize {
		return e, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(wire), MaxSize)
	}
	ms, err := jsonFormat.Members(wire, "envelope")
	if err != nil {
		return e, err
	}
	// The version decides which members belong: read it first.
	for _, m := range ms {
		if m.Name == "v" {
			switch string(m.Value) {
			case "1":
				e.Version = Version1
			case "2":
				e.Version = Version
			default:
				return e, fmt.Errorf("%w: unsupported version", ErrMalformed)
			}
		}
	}
	if e.Version == 0 {
		return e, fmt.Errorf("%w: missing field \"v\"", ErrMalformed)
	}
	fields := e.format().fields
	var have [9]bool
	for _, m := range ms {
		i := slices.Index(fields, m.Name)
		if i < 0 {
			return Envelope{}, fmt.Errorf("%w: unknown field %s in a v%d envelope", ErrMalformed, strictjson.Quote(m.Name), e.Version)
		}
		if err := e.setField(m, parseKey); err != nil {
			return Envelope{}, err
		}
		have[i] = true
	}
	for i, name := range fields {
		if !have[i] {
			return Envelope{}, fmt.Errorf("%w: missing field %q", ErrMalformed, name)
		}
	}
	if err := e.check(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// setField decodes member m, one of the fields of e's version other than
// v, into e.
func (e *Envelope) setField(m strictjson.Member, parseKey func(string) (kez.PublicKey, error)) error {
	bad := func(what string) error { return fmt.Errorf("%w: %q %s", ErrMalformed, m.Name, what) }
	switch m.Name {
	case "v":
		return nil // read by parse
	case "ts":
		ts, ok := parseTimestamp(m.Value)
		if !ok {
			return bad("must be a non-negative integer")
		}
		e.Timestamp = ts
		return nil
	}
	s, ok := strictjson.StringValue(m.Value)
	if !ok {
		return bad("must be a string")
	}
	switch m.Name {
	case "id":
		return decodeFixed(e.ID[:], s, bad)
	case "from", "to":
		k, err := parseKey(s)
		if err != nil {
			return fmt.Errorf("%w: %q: %w", ErrMalformed, m.Name, err)
		}
		if m.Name == "from" {
			e.From = k
		} else {
			e.To = k
		}
		return nil
	case "salt":
		return decodeFixed(e.Salt[:], s, bad)
	case "kc":
		return decodeFixed(e.Commitment[:], s, bad)
	case "ct":
		ct, err := decodeB64(s)
		if err != nil {
			return bad("must be canonical standard base64")
		}
		e.Ciphertext = ct
		return nil
	default: // "sig"
		return decodeFixed(e.Sig[:], s, bad)
	}
}

// decodeFixed decodes s into dst, which it must fill exactly.
func decodeFixed(dst []byte, s string, bad func(string) error) error {
	b, err := decodeB64(s)
	if err != nil || len(b) != len(dst) {
		return bad(fmt.Sprintf("must be %d bytes in canonical standard base64", len(dst)))
	}
	copy(dst, b)
	return nil
}

// decodeB64 decodes standard padded base64 and accepts only the canonical
// encoding. The strict decoder refuses non-zero padding bits, a missing or
// misplaced padding and characters outside the alphabet, but, like every
// Go base64 decoder, it skips \r and \n: refusing those two as well
// leaves exactly the canonical encoding (FuzzDecodeB64 checks this against
// decoding, re-encoding and comparing). A byte string has one text form,
// and so one header.
func decodeB64(s string) ([]byte, error) {
	if strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\n') >= 0 { // ContainsAny goes byte by byte
		return nil, fmt.Errorf("non-canonical base64")
	}
	return b64.DecodeString(s)
}

// parseTimestamp accepts the JSON integers 0, 1, ... that fit an int64,
// written as plain digits without leading zeros.
func parseTimestamp(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 19 || (v[0] == '0' && len(v) > 1) {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	ts, err := strconv.ParseInt(string(v), 10, 64)
	return ts, err == nil
}
