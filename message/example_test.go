package message_test

import (
	"errors"
	"fmt"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

func Example() {
	aliceKey, _ := kez.GenerateKey(nil)
	bobKey, _ := kez.GenerateKey(nil)
	// Each party makes one Identity of its key and keeps it: it caches the
	// work shared by all messages with a peer. Close clears its secrets.
	alice, bob := message.NewIdentity(aliceKey), message.NewIdentity(bobKey)
	defer alice.Close()
	defer bob.Close()

	// Alice seals a text for Bob and publishes wire to his inbox.
	_, wire, err := message.Seal(alice, bob.Public(), message.Text("hello, bob"), time.Now(), nil)
	if err != nil {
		panic(err)
	}

	// Bob parses what arrives, and opens it with the key he pinned for the
	// contact the envelope claims to come from.
	e, err := bob.Parse(wire)
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
		fmt.Println(e.Version, pt.Type(), pt.Body())
	}
	// Output:
	// 2 text hello, bob
}

func ExampleWrapKey() {
	aliceKey, _ := kez.GenerateKey(nil)
	bobKey, _ := kez.GenerateKey(nil)
	alice, bob := message.NewIdentity(aliceKey), message.NewIdentity(bobKey)
	defer alice.Close()
	defer bob.Close()
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
