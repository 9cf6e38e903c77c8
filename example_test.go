package kez_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"kez.lat/kez"
)

func ExampleParseHandle() {
	for _, in := range []string{"alice", "@Alice", "alice@kez.lat", "@bob@other.example", "al.ice"} {
		h, err := kez.ParseHandle(in, kez.DefaultDomain)
		if errors.Is(err, kez.ErrInvalidHandle) {
			fmt.Printf("%-20q refused: %v\n", in, err)
			continue
		}
		fmt.Printf("%-20q %s (local %s, skeleton %s)\n", in, h, h.Local(), h.Skeleton())
	}
	// Output:
	// "alice"              alice@kez.lat (local alice, skeleton allce)
	// "@Alice"             alice@kez.lat (local alice, skeleton allce)
	// "alice@kez.lat"      alice@kez.lat (local alice, skeleton allce)
	// "@bob@other.example" bob@other.example (local bob, skeleton bob)
	// "al.ice"             refused: invalid handle: only a-z, 0-9 and _ are allowed
}

func ExampleNewRegistrationRequest() {
	// In a client the seed comes from GenerateKey or a paper backup; a
	// fixed one (RFC 8032 test 1) keeps the output stable.
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	key, err := kez.NewPrivateKey(seed)
	if err != nil {
		panic(err)
	}
	h, err := kez.ParseHandle("alice", "kez.lat")
	if err != nil {
		panic(err)
	}
	now := time.Unix(1700000000, 0)
	req := kez.NewRegistrationRequest(key, h, now)
	fmt.Printf("signed message: %q\n", kez.PurposeRegistration.Message(kez.RegistrationMessage(h, req.Primary, req.Timestamp)))

	// The server of kez.lat checks it against its own clock.
	got, err := req.Verify("kez.lat", now.Add(time.Minute), kez.DefaultFreshness)
	fmt.Println("kez.lat:", got, err)
	// Another server refuses it: the domain is part of what was signed.
	_, err = req.Verify("other.example", now, kez.DefaultFreshness)
	fmt.Println("other.example:", errors.Is(err, kez.ErrWrongDomain))
	// Output:
	// signed message: "kez-register-v1\nalice@kez.lat\ned25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n1700000000"
	// kez.lat: alice@kez.lat <nil>
	// other.example: true
}
