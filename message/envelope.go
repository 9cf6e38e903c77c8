package message

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"kez.lat/kez"
	"kez.lat/kez/strictjson"
)

const (
	// Version is the "v" of every kez-msg-v1 envelope.
	Version = 1
	// MaxSize is the largest envelope Parse accepts and Seal produces, in
	// bytes of JSON. Messages are small; files never travel as messages.
	MaxSize = 64 << 10
	// IDSize is the length of a message id.
	IDSize = 16
	// SaltSize is the length of the per-message HKDF salt.
	SaltSize = 32

	// headerLabel starts the header, the associated data of the AEAD.
	headerLabel = "kez-msg-v1"
)

// b64 is standard padded base64 (RFC 4648 §4), strict about padding bits.
var b64 = base64.StdEncoding.Strict()

// ID is the random 16-byte id of a message, chosen by the sender.
type ID [IDSize]byte

// String returns the id in standard padded base64, its form in the
// envelope and the header.
func (id ID) String() string { return b64.EncodeToString(id[:]) }

// Envelope is one kez-msg-v1 message as it travels: who sent it to whom and
// when, the salt of its key, the ciphertext and the sender's signature. The
// fields are what the sender claims until [Envelope.Open] succeeds.
type Envelope struct {
	ID         ID
	From       kez.PublicKey
	To         kez.PublicKey
	Timestamp  int64 // unix seconds, as set by the sender
	Salt       [SaltSize]byte
	Ciphertext []byte // ChaCha20-Poly1305 output, tag included
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

// header returns the associated data of the AEAD:
// "kez-msg-v1\n" id "\n" from "\n" to "\n" ts, each field in its JSON text
// form (Parse accepts only canonical forms, so the header computed from the
// parsed fields is the text the sender put in the JSON).
func (e *Envelope) header() []byte {
	b := make([]byte, 0, 200)
	b = append(b, headerLabel+"\n"...)
	b = append(b, e.ID.String()...)
	b = append(b, '\n')
	b = append(b, e.From.String()...)
	b = append(b, '\n')
	b = append(b, e.To.String()...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, e.Timestamp, 10)
	return b
}

// signedMessage returns header || salt || ct, the bytes the sender signs
// after the context of [kez.PurposeMessageV1] ("kez-msg-v1-sig\x00"); h is
// e.header().
func (e *Envelope) signedMessage(h []byte) []byte {
	b := make([]byte, 0, len(h)+SaltSize+len(e.Ciphertext))
	b = append(b, h...)
	b = append(b, e.Salt[:]...)
	b = append(b, e.Ciphertext...)
	return b
}

// check reports whether e could have come out of Parse.
func (e *Envelope) check() error {
	switch {
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
// order v, id, from, to, ts, salt, ct, sig.
func (e Envelope) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(300 + b64.EncodedLen(len(e.Ciphertext)))
	// Every value is base64, lowercase hex or digits: nothing to escape.
	b.WriteString(`{"v":1,"id":"`)
	b.WriteString(e.ID.String())
	b.WriteString(`","from":"`)
	b.WriteString(e.From.String())
	b.WriteString(`","to":"`)
	b.WriteString(e.To.String())
	b.WriteString(`","ts":`)
	b.WriteString(strconv.FormatInt(e.Timestamp, 10))
	b.WriteString(`,"salt":"`)
	b.WriteString(b64.EncodeToString(e.Salt[:]))
	b.WriteString(`","ct":"`)
	b.WriteString(b64.EncodeToString(e.Ciphertext))
	b.WriteString(`","sig":"`)
	b.WriteString(b64.EncodeToString(e.Sig[:]))
	b.WriteString(`"}`)
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, b.Len(), MaxSize)
	}
	return b.Bytes(), nil
}

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

// Parse decodes the wire form of an envelope, strictly: at most [MaxSize]
// bytes ([ErrTooLarge]); one JSON object with exactly the members v, id,
// from, to, ts, salt, ct and sig in any order, none repeated; v is 1; id,
// salt and sig are 16, 32 and 64 bytes and every byte string is canonical
// standard padded base64; from and to are valid keys in the
// ed25519:<lowercase hex> form (else the error also matches
// [kez.ErrInvalidKey]); ts is a non-negative
// integer written without sign, fraction or exponent; ct is at least the
// 16-byte tag. Anything else is [ErrMalformed]. Parse checks no signature:
// see [Envelope.Open].
func Parse(wire []byte) (Envelope, error) {
	var e Envelope
	if len(wire) > MaxSize {
		return e, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(wire), MaxSize)
	}
	ms, err := objectMembers(wire)
	if err != nil {
		return e, err
	}
	var have [8]bool
	for _, m := range ms {
		i, err := e.setField(m)
		if err != nil {
			return Envelope{}, err
		}
		have[i] = true
	}
	for i, ok := range have {
		if !ok {
			return Envelope{}, fmt.Errorf("%w: missing field %q", ErrMalformed, fieldNames[i])
		}
	}
	if err := e.check(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

var fieldNames = [8]string{"v", "id", "from", "to", "ts", "salt", "ct", "sig"}

// setField decodes one member into e and returns its index in fieldNames.
func (e *Envelope) setField(m member) (int, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %q %s", ErrMalformed, m.name, what) }
	var s string
	switch m.name {
	case "v":
		if string(m.value) != "1" {
			return 0, fmt.Errorf("%w: unsupported version", ErrMalformed)
		}
		return 0, nil
	case "ts":
		ts, ok := parseTimestamp(m.value)
		if !ok {
			return 0, bad("must be a non-negative integer")
		}
		e.Timestamp = ts
		return 4, nil
	case "id", "from", "to", "salt", "ct", "sig":
		var ok bool
		if s, ok = jsonString(m.value); !ok {
			return 0, bad("must be a string")
		}
	default:
		return 0, fmt.Errorf("%w: unknown field %s", ErrMalformed, strictjson.Quote(m.name))
	}
	switch m.name {
	case "id":
		return 1, decodeFixed(e.ID[:], s, bad)
	case "from", "to":
		k, err := parseKey(s)
		if err != nil {
			return 0, fmt.Errorf("%w: %q: %w", ErrMalformed, m.name, err)
		}
		if m.name == "from" {
			e.From = k
			return 2, nil
		}
		e.To = k
		return 3, nil
	case "salt":
		return 5, decodeFixed(e.Salt[:], s, bad)
	case "ct":
		ct, err := decodeB64(s)
		if err != nil {
			return 0, bad("must be canonical standard base64")
		}
		e.Ciphertext = ct
		return 6, nil
	default: // "sig"
		return 7, decodeFixed(e.Sig[:], s, bad)
	}
}

// maxCachedKeys bounds the cache of parsed keys.
const maxCachedKeys = 1024

// keyCache holds the keys Parse has accepted, by their text: checking a
// key (decompressing the point, refusing small order) costs as much as
// the rest of Parse, and a client hears from few keys.
var keyCache struct {
	mu sync.RWMutex
	m  map[string]kez.PublicKey
}

// parseKey is [kez.ParsePublicKey] with a cache of the keys it accepted
// (the check is a pure function of the text; refusals are not cached).
func parseKey(s string) (kez.PublicKey, error) {
	keyCache.mu.RLock()
	k, ok := keyCache.m[s]
	keyCache.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := kez.ParsePublicKey(s)
	if err != nil {
		return k, err
	}
	keyCache.mu.Lock()
	defer keyCache.mu.Unlock()
	if keyCache.m == nil {
		keyCache.m = make(map[string]kez.PublicKey)
	}
	if len(keyCache.m) >= maxCachedKeys {
		for t := range keyCache.m {
			delete(keyCache.m, t)
			break
		}
	}
	keyCache.m[s] = k
	return k, nil
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
	if strings.ContainsAny(s, "\r\n") {
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
