package sigchain_test

import (
	"encoding/json"
	"fmt"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

func Example() {
	// The client signs its first events...
	key, _ := kez.NewPrivateKey(make([]byte, 32)) // use kez.GenerateKey in real code
	now := time.Unix(1767225600, 0)
	first, _ := sigchain.Next(key, nil, sigchain.TypeAddEndpoint,
		sigchain.NATSEndpoint{URL: "nats://nats.kez.lat:4222", Inbox: sigchain.Inbox(key.Public())}, now)
	second, _ := sigchain.Next(key, &first, sigchain.TypeAddClaim,
		sigchain.Claim{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/1"}, now)

	// ...the server parses and checks each before appending it...
	wire, _ := json.Marshal(second)
	ev, err := sigchain.ParseEvent(wire)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("append:", sigchain.VerifyAppend(key.Public(), &first, ev))

	// ...and a contact verifies the whole chain against the key the
	// registry gave for the handle, then pins its tail.
	state, err := sigchain.VerifyChain(key.Public(), []sigchain.Event{first, ev})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("inbox:", state.NATS[0].Inbox == sigchain.Inbox(key.Public()))
	fmt.Println("claim:", state.Claims[0].Kind, state.Claims[0].Value)
	fmt.Println("pinned seqno:", state.Tail.Seqno)

	// A server that later drops the second event is caught.
	_, err = state.Extend([]sigchain.Event{first})
	fmt.Println(err)
	// Output:
	// append: <nil>
	// inbox: true
	// claim: github alice
	// pinned seqno: 2
	// sigchain rolled back: fewer events than pinned: pinned seqno 2 not shown
}
