package mnemonic

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// vector is one English entry of the trezor BIP-39 vectors:
// [entropy hex, mnemonic, seed hex, xprv]. Only the first two matter here.
type vector struct {
	Entropy  string
	Mnemonic string
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var all map[string][][]string
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for _, e := range all["english"] {
		if len(e) < 2 {
			t.Fatalf("short vector %q", e)
		}
		vs = append(vs, vector{Entropy: e[0], Mnemonic: e[1]})
	}
	if len(vs) != 24 {
		t.Fatalf("got %d English vectors, want 24", len(vs))
	}
	return vs
}

// TestVectorsAllLengths checks the entropy <-> words map against every
// English vector, 12 to 24 words.
func TestVectorsAllLengths(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Entropy, func(t *testing.T) {
			t.Parallel()
			entropy, err := hex.DecodeString(v.Entropy)
			if err != nil {
				t.Fatal(err)
			}
			words, err := encode(entropy)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if got := strings.Join(words, " "); got != v.Mnemonic {
				t.Errorf("encode(%s) = %q, want %q", v.Entropy, got, v.Mnemonic)
			}
			got, err := decode(strings.Fields(v.Mnemonic))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if hex.EncodeToString(got) != v.Entropy {
				t.Errorf("decode(%q) = %x, want %s", v.Mnemonic, got, v.Entropy)
			}
		})
	}
}

func TestChecksumAllLengths(t *testing.T) {
	for _, v := range loadVectors(t) {
		fields := strings.Fields(v.Mnemonic)
		// Changing the last word changes only its checksum bits and low
		// entropy bits; every other last word but one in 2^cs must fail.
		last := wordIndex[fields[len(fields)-1]]
		fields[len(fields)-1] = wordList[last^1]
		if _, err := decode(fields); !errors.Is(err, ErrChecksum) {
			// Flipping the lowest index bit flips one checksum bit.
			t.Errorf("%d words, last word changed: err = %v, want ErrChecksum", len(fields), err)
		}
	}
}

func TestEncodeSizes(t *testing.T) {
	for n := 0; n <= 40; n++ {
		_, err := encode(make([]byte, n))
		ok := n >= 16 && n <= 32 && n%4 == 0
		if (err == nil) != ok {
			t.Errorf("encode(%d bytes) err = %v, want ok=%v", n, err, ok)
		}
	}
	for _, count := range []int{0, 1, 11, 13, 23, 25, 27} {
		if _, err := decode(make([]string, count)); !errors.Is(err, ErrWordCount) {
			t.Errorf("decode(%d words) err = %v, want ErrWordCount", count, err)
		}
	}
}

func TestWordList(t *testing.T) {
	if sum := sha256.Sum256([]byte(englishTxt)); hex.EncodeToString(sum[:]) != "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda" {
		t.Errorf("english.txt SHA-256 = %x, not the BIP-39 English list", sum)
	}
	prefixes := map[string]bool{}
	for _, w := range wordList {
		if len(w) < 3 || len(w) > 8 {
			t.Errorf("word %q: length %d", w, len(w))
		}
		p := w[:min(4, len(w))]
		if prefixes[p] {
			t.Errorf("prefix %q is not unique", p)
		}
		prefixes[p] = true
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "abc", 0},
		{"abandn", "abandon", 1},
		{"abnadon", "abandon", 1}, // swap
		{"kitten", "sitting", 3},
		{"ca", "abc", 3}, // optimal string alignment, not full Damerau
		{"a", "abcdef", 5},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b, 10); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.a, tt.b, 1); got != min(tt.want, 2) {
			t.Errorf("editDistance(%q, %q, limit 1) = %d, want %d", tt.a, tt.b, got, min(tt.want, 2))
		}
	}
}
