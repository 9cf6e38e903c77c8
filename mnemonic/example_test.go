package mnemonic_test

import (
	"fmt"
	"strings"

	"kez.lat/kez/mnemonic"
)

func Example() {
	seed := make([]byte, 32) // a real seed comes from kez.PrivateKey.Seed
	words, err := mnemonic.FromSeed(seed)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(words), words[0], words[23])

	// The user types the words back, in any case and spacing.
	back, err := mnemonic.ToSeed(strings.ToUpper(strings.Join(words, "  ")))
	fmt.Println(len(back), err)
	// Output:
	// 24 abandon art
	// 32 <nil>
}

func ExampleUnknownWordsError() {
	_, err := mnemonic.ToSeed("abandn" + strings.Repeat(" abandon", 22) + " art")
	fmt.Println(err)
	if uerr, ok := err.(*mnemonic.UnknownWordsError); ok {
		for _, w := range uerr.Words {
			fmt.Printf("word %d: did you mean %s?\n", w.Position, strings.Join(w.Suggestions, " or "))
		}
	}
	// Output:
	// mnemonic: word 1 is not in the BIP-39 English list
	// word 1: did you mean abandon?
}
