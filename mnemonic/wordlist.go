package mnemonic

import (
	_ "embed"
	"slices"
	"strings"
)

// english.txt is the BIP-39 English word list; see README.md for its source.
//
//go:embed english.txt
var englishTxt string

// wordList holds the 2048 words in list order (the order is the encoding);
// wordIndex maps each word back to its index. Both are read-only after
// package initialisation.
var wordList, wordIndex = parseWordList(englishTxt)

func parseWordList(s string) ([]string, map[string]int) {
	words := strings.Fields(s)
	if len(words) != 2048 || !slices.IsSorted(words) {
		panic("mnemonic: embedded BIP-39 word list is corrupt")
	}
	index := make(map[string]int, len(words))
	for i, w := range words {
		index[w] = i
	}
	if len(index) != len(words) {
		panic("mnemonic: embedded BIP-39 word list has duplicates")
	}
	return words, index
}

// IsWord reports whether w (already lower case) is in the BIP-39 English
// word list.
func IsWord(w string) bool {
	_, ok := wordIndex[w]
	return ok
}

// maxSuggestions is how many suggestions [Suggest] returns at most.
const maxSuggestions = 3

// Suggest returns up to three words of the list that the user may have meant
// by w, best first, or none if nothing is close. A word is close when it is
// within a small edit distance of w (insertions, deletions, substitutions and
// swaps of adjacent letters: 1 for words of up to three letters, else 2),
// when w is a prefix of it of at least three letters (distance 1), or when it
// shares its first four letters with w (every word of the list is identified
// by its first four letters). Closer words come first; among equals, words
// that contain all of w's letters in order (a letter was left out), then
// words sharing a longer prefix with w, then list order.
func Suggest(w string) []string {
	w = strings.ToLower(strings.TrimSpace(w))
	if w == "" || len(w) > 32 {
		return nil
	}
	maxDist := 2
	if len(w) <= 3 {
		maxDist = 1
	}
	type cand struct {
		word   string
		dist   int
		subseq bool
		prefix int
	}
	var cands []cand
	for _, word := range wordList {
		d := editDistance(w, word, maxDist)
		if len(w) >= 3 && strings.HasPrefix(word, w) {
			d = min(d, 1)
		}
		if len(w) >= 4 && len(word) >= 4 && word[:4] == w[:4] {
			d = min(d, maxDist)
		}
		if d > maxDist {
			continue
		}
		cands = append(cands, cand{word, d, isSubsequence(w, word), commonPrefix(w, word)})
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		switch {
		case a.dist != b.dist:
			return a.dist - b.dist
		case a.subseq != b.subseq:
			if a.subseq {
				return -1
			}
			return 1
		}
		return b.prefix - a.prefix
	})
	var out []string
	for _, c := range cands[:min(len(cands), maxSuggestions)] {
		out = append(out, c.word)
	}
	return out
}

// isSubsequence reports whether all bytes of a appear in b in order.
func isSubsequence(a, b string) bool {
	i := 0
	for j := 0; i < len(a) && j < len(b); j++ {
		if a[i] == b[j] {
			i++
		}
	}
	return i == len(a)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// editDistance returns the optimal string alignment distance between a and
// b (Levenshtein plus transposition of adjacent bytes), or limit+1 as soon
// as it is certain to exceed limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	// Three rows of the dynamic programming table: i-2, i-1 and i. List
	// words are short, so the rows usually live on the stack.
	var rows [3][16]int
	n := len(b) + 1
	prev2, prev, cur := rows[0][:0], rows[1][:0], rows[2][:0]
	if n > len(rows[0]) {
		prev2, prev, cur = make([]int, 0, n), make([]int, 0, n), make([]int, 0, n)
	}
	prev2, prev, cur = prev2[:n], prev[:n], cur[:n]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[len(b)], limit+1)
}
