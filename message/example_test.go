package message_test

import (
	"errors"
	"fmt"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

func Example() {
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)

	// Alice seals a text for Bob and publishes wire to his inbox.
	_, wire, err := message.Seal(alice, bob.Public(), message.Text("hello, bob"), time.Now(), nil)
	if err != nil {
		panic(err)
	}

	// Bob parses what arrives, and opens it with the key he pinned for the
	// contact the envelope claims to come from.
	e, err := message.Parse(wire)
	if err != nil {
		panic(err)
	}
	pinned := alice.Public() // from Bob's contacts, looked up by e.From
	pt, err := e.Open(bob, pinned)
	switch {
	case errors.Is(err, message.ErrSenderMismatch):
		fmt.Println("not from a contact")
	case err != nil:
		fmt.Println("rejected:", err)
	case !pt.Known():
		fmt.Printf("a message of type %q this version cannot show\n", pt.Type())
	default:
		fmt.Println(pt.Type(), pt.Body())
	}
	// Output:
	// text hello, bob
}

func ExampleWrapKey() {
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)
	contentKey := make([]byte, message.ContentKeySize) // random in real use
	ad := []byte("what the key is for")

	wrapped, err := message.WrapKey(alice, bob.Public(), contentKey, ad, nil)
	if err != nil {
		panic(err)
	}
	key, err := message.UnwrapKey(bob, alice.Public(), wrapped, ad)
	fmt.Println(len(wrapped), len(key), err)
	// Output:
	// 80 32 <nil>
}
