package blob

import (
	"encoding/hex"
	"fmt"
)

// Hash is the content address of a blob: the BLAKE3-256 of its bytes, which
// is also the root of its Bao tree. Its text form is 64 lowercase hex
// digits.
type Hash [32]byte

// ParseHash parses the text form of a Hash. It returns [ErrMalformedHash]
// for anything but 64 lowercase hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return Hash{}, ErrMalformedHash
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || h.String() != s {
		return Hash{}, ErrMalformedHash
	}
	return h, nil
}

// String returns the 64 lowercase hex digits of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText returns the text form of h.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses the text form of a hash into h.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return fmt.Errorf("blob hash: %w", err)
	}
	*h = p
	return nil
}
