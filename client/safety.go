package client

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"

	"kez.lat/kez"
)

// safetyIterations makes each fingerprint cost 5200 SHA-512s, as Signal's
// safety numbers do: finding a key whose 30 digits collide with a victim's
// (2^100 work for the digits alone) is made that much slower still.
const safetyIterations = 5200

// safetyVersion separates these digests from every other use of SHA-512
// over a key.
const safetyVersion = "kez-safety-v1\x00"

// Fingerprint returns the 30-digit fingerprint of key, in six groups of
// five digits: half of a safety number.
func Fingerprint(key kez.PublicKey) string {
	return strings.Join(fingerprintGroups(key), " ")
}

func fingerprintGroups(key kez.PublicKey) []string {
	kb := key.Bytes()
	h := sha512.Sum512(append([]byte(safetyVersion), kb...))
	for range safetyIterations {
		h = sha512.Sum512(append(h[:], kb...))
	}
	groups := make([]string, 6)
	for i := range groups {
		// 5 bytes (40 bits) per group, reduced to 5 digits: the bias of
		// 2^40 mod 100000 is negligible.
		var b [8]byte
		copy(b[3:], h[i*5:i*5+5])
		groups[i] = fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000)
	}
	return groups
}

// SafetyNumber returns the 60-digit safety number of a conversation
// between keys a and b, in twelve groups of five: the two fingerprints,
// the smaller key's first, so both sides compute the same number. Reading
// it out (or comparing it side by side) proves that neither side's server
// swapped a key.
func SafetyNumber(a, b kez.PublicKey) string {
	ga, gb := fingerprintGroups(a), fingerprintGroups(b)
	if bytes.Compare(a.Bytes(), b.Bytes()) > 0 {
		ga, gb = gb, ga
	}
	return strings.Join(append(ga, gb...), " ")
}
