package mnemonic

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Words is the number of words of a kez paper backup: 256 bits of seed and
// 8 bits of checksum, 11 bits per word.
const Words = 24

var (
	// ErrWordCount: the input does not have exactly [Words] words.
	ErrWordCount = errors.New("mnemonic: wrong number of words")
	// ErrChecksum: all words are in the list but the checksum does not
	// match, so at least one of them is wrong (or two are swapped).
	ErrChecksum = errors.New("mnemonic: checksum mismatch, a word is wrong or out of order")
	// ErrUnknownWord: a word is not in the BIP-39 English list. The error is
	// an [*UnknownWordsError]; use errors.As for the details.
	ErrUnknownWord = errors.New("mnemonic: word not in the BIP-39 English list")
	// ErrSeedSize: FromSeed was given something other than 32 bytes.
	ErrSeedSize = errors.New("mnemonic: seed must be 32 bytes")
)

// UnknownWord is one word of the input that is not in the list.
type UnknownWord struct {
	// Position is the word's place in the input, counting from 1.
	Position int
	// Word is the word as typed (lower-cased).
	Word string
	// Suggestions are the closest words of the list, best first; maybe none.
	Suggestions []string
}

// UnknownWordsError reports every word of the input that is not in the
// BIP-39 English list. It matches [ErrUnknownWord] with errors.Is.
//
// Its Error text names the positions and the words as typed (an unknown word
// is not a backup word) but never the suggestions, which are real words of
// the list and may be the user's secret: show them from the Words field,
// only to the user.
type UnknownWordsError struct {
	Words []UnknownWord
}

func (e *UnknownWordsError) Error() string {
	var b strings.Builder
	b.WriteString("mnemonic: ")
	if len(e.Words) == 1 {
		b.WriteString("word ")
	} else {
		b.WriteString("words ")
	}
	for i, w := range e.Words {
		if i > 0 {
			b.WriteString(", ")
		}
		// Positions only: a typo is one edit from a secret word, and
		// errors end up in logs. The words are in the fields, for the UI.
		b.WriteString(strconv.Itoa(w.Position))
	}
	if len(e.Words) == 1 {
		b.WriteString(" is")
	} else {
		b.WriteString(" are")
	}
	b.WriteString(" not in the BIP-39 English list")
	return b.String()
}

// Is reports whether target is [ErrUnknownWord].
func (e *UnknownWordsError) Is(target error) bool { return target == ErrUnknownWord }

// FromSeed returns the 24 words that encode seed, the 32-byte ed25519 seed
// of a primary key (see kez.PrivateKey.Seed). It returns [ErrSeedSize] if
// seed is not 32 bytes.
func FromSeed(seed []byte) ([]string, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, ErrSeedSize
	}
	return encode(seed)
}

// ToSeed returns the 32-byte ed25519 seed that words encode. Words may be in
// any case and separated by any run of white space. ToSeed returns an
// [*UnknownWordsError] (matching [ErrUnknownWord]) naming every word not in
// the list, else [ErrWordCount] if there are not exactly 24 words, else
// [ErrChecksum] if the checksum does not match. Error texts name an unknown
// word as typed, never a word of the list.
func ToSeed(words string) ([]byte, error) {
	fields := normalize(words)
	if len(fields) > Words {
		// Do not spend time suggesting fixes for an essay.
		return nil, fmt.Errorf("%w: got %d, want %d", ErrWordCount, len(fields), Words)
	}
	if err := checkWords(fields); err != nil {
		return nil, err
	}
	if len(fields) != Words {
		return nil, fmt.Errorf("%w: got %d, want %d", ErrWordCount, len(fields), Words)
	}
	return decode(fields)
}

// normalize splits s at white space and lower-cases each word.
func normalize(s string) []string {
	fields := strings.Fields(s)
	for i, f := range fields {
		fields[i] = strings.ToLower(f)
	}
	return fields
}

// checkWords returns an *UnknownWordsError for the words not in the list.
func checkWords(fields []string) error {
	var unknown []UnknownWord
	for i, f := range fields {
		if !IsWord(f) {
			unknown = append(unknown, UnknownWord{Position: i + 1, Word: f, Suggestions: Suggest(f)})
		}
	}
	if unknown != nil {
		return &UnknownWordsError{Words: unknown}
	}
	return nil
}

// encode is the BIP-39 entropy -> words map for any BIP-39 entropy size
// (16 to 32 bytes in steps of 4): entropy followed by its checksum, the
// first len(entropy)/4 bits of SHA-256(entropy), read as 11-bit big-endian
// word indexes.
func encode(entropy []byte) ([]string, error) {
	n := len(entropy)
	if n < 16 || n > 32 || n%4 != 0 {
		return nil, fmt.Errorf("mnemonic: entropy of %d bytes, want 16 to 32 in steps of 4", n)
	}
	// The hash and the copy of the entropy are the seed's: cleared once
	// the words are read out of them.
	sum := sha256.Sum256(entropy)
	defer clear(sum[:])
	// At most 8 checksum bits, all in the first byte of the hash.
	bits := append(append(make([]byte, 0, n+1), entropy...), sum[0])
	defer clear(bits)
	count := (n*8 + n/4) / 11
	words := make([]string, count)
	for i := range words {
		words[i] = wordList[readBits11(bits, i*11)]
	}
	return words, nil
}

// decode is the words -> entropy map of BIP-39, the inverse of encode. All
// fields must be words of the list. It returns ErrWordCount for a count
// BIP-39 does not define and ErrChecksum if the checksum does not match.
func decode(fields []string) ([]byte, error) {
	count := len(fields)
	if count < 12 || count > 24 || count%3 != 0 {
		return nil, fmt.Errorf("%w: got %d, BIP-39 defines 12, 15, 18, 21 or 24", ErrWordCount, count)
	}
	csBits := count / 3 // total bits = 33*csBits: 32*csBits of entropy, csBits of checksum
	n := csBits * 4     // entropy bytes
	bits := make([]byte, n+1)
	for i, f := range fields {
		idx, ok := wordIndex[f]
		if !ok {
			return nil, ErrUnknownWord // callers check words first
		}
		writeBits11(bits, i*11, idx)
	}
	entropy := bits[:n]
	sum := sha256.Sum256(entropy)
	defer clear(sum[:])
	mask := byte(0xff << (8 - csBits))
	ok := subtle.ConstantTimeByteEq(bits[n]&mask, sum[0]&mask) == 1
	bits[n] = 0 // the checksum, past the entropy returned
	if !ok {
		clear(entropy)
		return nil, ErrChecksum
	}
	return entropy, nil
}

// readBits11 returns the 11 bits of b starting at bit offset off (bit 0 is
// the most significant bit of b[0]).
func readBits11(b []byte, off int) int {
	v := 0
	for i := off; i < off+11; i++ {
		v = v<<1 | int(b[i/8]>>(7-i%8)&1)
	}
	return v
}

// writeBits11 stores the 11-bit value v in b at bit offset off; b must be
// zero there.
func writeBits11(b []byte, off, v int) {
	for i := 0; i < 11; i++ {
		if v>>(10-i)&1 == 1 {
			p := off + i
			b[p/8] |= 1 << (7 - p%8)
		}
	}
}
