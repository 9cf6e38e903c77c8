package mnemonic_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/mnemonic"
)

// vectors24 returns the 24-word English vectors: [entropy hex, mnemonic].
func vectors24(t testing.TB) [][2]string {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var all map[string][][]string
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	var vs [][2]string
	for _, e := range all["english"] {
		if len(strings.Fields(e[1])) == 24 {
			vs = append(vs, [2]string{e[0], e[1]})
		}
	}
	if len(vs) != 8 {
		t.Fatalf("got %d 24-word vectors, want 8", len(vs))
	}
	return vs
}

func TestVectors24(t *testing.T) {
	for _, v := range vectors24(t) {
		t.Run(v[0], func(t *testing.T) {
			t.Parallel()
			seed, _ := hex.DecodeString(v[0])
			words, err := mnemonic.FromSeed(seed)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(words, " "); got != v[1] {
				t.Errorf("FromSeed(%s) = %q, want %q", v[0], got, v[1])
			}
			got, err := mnemonic.ToSeed(v[1])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, seed) {
				t.Errorf("ToSeed(%q) = %x, want %s", v[1], got, v[0])
			}
		})
	}
}

func TestNormalization(t *testing.T) {
	v := vectors24(t)[3]
	words := strings.Fields(v[1])
	inputs := []string{
		strings.ToUpper(v[1]),
		"  " + strings.Join(words, "\n") + "\n",
		strings.Join(words, " \t  "),
		mixedCase(v[1]),
	}
	for _, in := range inputs {
		got, err := mnemonic.ToSeed(in)
		if err != nil {
			t.Errorf("ToSeed(variant) err = %v", err)
			continue
		}
		if hex.EncodeToString(got) != v[0] {
			t.Errorf("ToSeed(variant) = %x, want %s", got, v[0])
		}
	}
}

// mixedCase upper-cases every other letter.
func mixedCase(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i += 2 {
		if b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

func TestKeyRoundTrip(t *testing.T) {
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	words, err := mnemonic.FromSeed(k.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if len(words) != mnemonic.Words {
		t.Fatalf("got %d words", len(words))
	}
	seed, err := mnemonic.ToSeed(strings.Join(words, " "))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := kez.NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(k.Public()) {
		t.Error("recovered key differs")
	}
}

func TestFromSeedSize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := mnemonic.FromSeed(make([]byte, n)); !errors.Is(err, mnemonic.ErrSeedSize) {
			t.Errorf("FromSeed(%d bytes) err = %v, want ErrSeedSize", n, err)
		}
	}
}

func TestChecksum(t *testing.T) {
	for _, v := range vectors24(t) {
		words := strings.Fields(v[1])
		// Swap two different words: same words, wrong order.
		for i := 1; i < len(words); i++ {
			if words[i] != words[0] {
				words[0], words[i] = words[i], words[0]
				break
			}
		}
		_, err := mnemonic.ToSeed(strings.Join(words, " "))
		if !errors.Is(err, mnemonic.ErrChecksum) {
			t.Errorf("swapped words of %s: err = %v, want ErrChecksum", v[0], err)
		}
		assertNoWords(t, err, v[1])
	}
	// The last word carries 8 checksum bits: of the 2048 words only 8
	// complete "abandon x23" correctly (3 free entropy bits).
	prefix := strings.Repeat("abandon ", 23)
	valid := 0
	for _, w := range strings.Fields(allWords(t)) {
		_, err := mnemonic.ToSeed(prefix + w)
		switch {
		case err == nil:
			valid++
		case !errors.Is(err, mnemonic.ErrChecksum):
			t.Fatalf("last word %q: err = %v", w, err)
		}
	}
	if valid != 8 {
		t.Errorf("%d valid last words, want 8", valid)
	}
}

func allWords(t testing.TB) string {
	b, err := os.ReadFile("english.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWordCount(t *testing.T) {
	v := vectors24(t)[0]
	words := strings.Fields(v[1])
	for _, n := range []int{0, 1, 12, 23, 25, 48} {
		var in []string
		for i := range n {
			in = append(in, words[i%len(words)])
		}
		_, err := mnemonic.ToSeed(strings.Join(in, " "))
		if !errors.Is(err, mnemonic.ErrWordCount) {
			t.Errorf("%d words: err = %v, want ErrWordCount", n, err)
		}
	}
	// A valid 12-word BIP-39 mnemonic is not a kez backup.
	if _, err := mnemonic.ToSeed("legal winner thank year wave sausage worth useful legal winner thank yellow"); !errors.Is(err, mnemonic.ErrWordCount) {
		t.Errorf("12-word mnemonic: err = %v, want ErrWordCount", err)
	}
}

func TestUnknownWords(t *testing.T) {
	v := vectors24(t)[7]
	words := strings.Fields(v[1])
	words[2] = "abandn"
	words[9] = "Zooo"
	_, err := mnemonic.ToSeed(strings.Join(words, " "))
	if !errors.Is(err, mnemonic.ErrUnknownWord) {
		t.Fatalf("err = %v, want ErrUnknownWord", err)
	}
	var uerr *mnemonic.UnknownWordsError
	if !errors.As(err, &uerr) {
		t.Fatalf("err = %T, want *UnknownWordsError", err)
	}
	if len(uerr.Words) != 2 {
		t.Fatalf("got %d unknown words, want 2", len(uerr.Words))
	}
	if u := uerr.Words[0]; u.Position != 3 || u.Word != "abandn" || !slices.Contains(u.Suggestions, "abandon") || u.Suggestions[0] != "abandon" {
		t.Errorf("first unknown = %+v, want position 3, abandn, suggesting abandon first", u)
	}
	if u := uerr.Words[1]; u.Position != 10 || u.Word != "zooo" || len(u.Suggestions) == 0 || u.Suggestions[0] != "zoo" {
		t.Errorf("second unknown = %+v, want position 10, zooo, suggesting zoo first", u)
	}
	msg := err.Error()
	if strings.Contains(msg, "abandn") || !strings.Contains(msg, "3") || !strings.Contains(msg, "10") {
		t.Errorf("error %q should name the positions, and not the typed words (a typo is one edit from a secret word)", msg)
	}
	// The suggestions and the correct words never reach the error text.
	assertNoWords(t, err, v[1]+" abandon zoo")

	// An unknown word is reported even when the count is also wrong: the
	// user most likely merged or split a word.
	_, err = mnemonic.ToSeed("abandonabandon " + strings.Repeat("abandon ", 21) + "art")
	if !errors.Is(err, mnemonic.ErrUnknownWord) {
		t.Errorf("23 words with a merged one: err = %v, want ErrUnknownWord", err)
	}
	// Long pasted garbage is cut short in the message.
	_, err = mnemonic.ToSeed(strings.Repeat("x", 1000))
	if !errors.Is(err, mnemonic.ErrUnknownWord) || len(err.Error()) > 100 {
		t.Errorf("long word: err = %v", err)
	}
}

// assertNoWords fails if err's text contains any list word of backup, other
// than the list words that the fixed error texts use ("word", "wrong"...).
func assertNoWords(t *testing.T, err error, backup string) {
	t.Helper()
	if err == nil {
		return
	}
	fixed := mnemonic.ErrChecksum.Error() + " " + mnemonic.ErrWordCount.Error() + " " +
		mnemonic.ErrUnknownWord.Error() + " words are is"
	msg := err.Error()
	for _, w := range strings.Fields(backup) {
		if mnemonic.IsWord(w) && containsWord(msg, w) && !containsWord(fixed, w) {
			t.Errorf("error %q contains the backup word %q", msg, w)
		}
	}
}

func containsWord(msg, w string) bool {
	f := func(r rune) bool { return r < 'a' || r > 'z' }
	return slices.Contains(strings.FieldsFunc(strings.ToLower(msg), f), w)
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		typed string
		want  string // first suggestion; "" for none
	}{
		{"abandn", "abandon"},
		{"abandonn", "abandon"},
		{"abnadon", "abandon"}, // adjacent letters swapped
		{"aban", "abandon"},    // the four-letter prefix identifies a word
		{"zooo", "zoo"},
		{"wrld", "world"},
		{"recieve", "receive"},
		{"cabage", "cabbage"},
		{"ABANDN", "abandon"},
		{"qqqqqqq", ""},
		{"", ""},
		{strings.Repeat("a", 100), ""},
	}
	for _, tt := range tests {
		got := mnemonic.Suggest(tt.typed)
		if len(got) > 3 {
			t.Errorf("Suggest(%q) = %q, more than 3", tt.typed, got)
		}
		first := ""
		if len(got) > 0 {
			first = got[0]
		}
		if first != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q first", tt.typed, got, tt.want)
		}
	}
}

func FuzzToSeed(f *testing.F) {
	for _, v := range vectors24(f) {
		f.Add(v[1])
	}
	f.Add("abandn " + strings.Repeat("abandon ", 23))
	f.Add(strings.Repeat("zoo ", 24))
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		seed, err := mnemonic.ToSeed(in)
		if err != nil {
			if seed != nil {
				t.Errorf("seed returned with error %v", err)
			}
			if !errors.Is(err, mnemonic.ErrWordCount) && !errors.Is(err, mnemonic.ErrChecksum) && !errors.Is(err, mnemonic.ErrUnknownWord) {
				t.Errorf("unexpected error %v", err)
			}
			return
		}
		if len(seed) != 32 {
			t.Fatalf("seed of %d bytes", len(seed))
		}
		words, err := mnemonic.FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(words, " "), strings.ToLower(strings.Join(strings.Fields(in), " ")); got != want {
			t.Errorf("FromSeed(ToSeed(%q)) = %q", in, got)
		}
	})
}
