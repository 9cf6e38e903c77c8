// Package kez holds the domain vocabulary of kez-chat: handles, primary keys,
// registration requests and records, and the sentinel errors every other
// package speaks.
//
// # Identity
//
// A user is a [Handle] such as alice@kez.lat bound to one ed25519
// [PublicKey]. The same key is the user's NATS credential (its nkey form, see
// [PublicKey.NKey]), the identity of the user's P2P node and the signer of
// the user's sigchain. Keys are checked when they enter the system
// ([ParsePublicKey] refuses non-canonical encodings and small-order points,
// both of which crypto/ed25519 accepts).
//
// # Signatures
//
// Every signature is over a domain-separated message: a fixed context string
// for its purpose followed by the exact bytes signed, so that no signature is
// valid for two purposes. A registration is signed over
// [RegistrationMessage].
//
// # Wire contract
//
// What a client and the servers both speak is defined here once, so that
// the user's binary links no server package: the public [Record] of a
// handle and the sigchain route ([SigchainURL], [SigchainPath]), the
// relay-address rules ([ParseRelayAddr]), the NATS subjects a client uses
// (the inbox door's, [DoorSubject]; presence, [PresenceKeySubject]), and
// the error codes of the HTTP APIs ([ErrorCodes], [ErrorBody]).
//
// # Errors
//
// Sentinel errors such as [ErrHandleTaken] are matched with [errors.Is];
// packages wrap them with context. Over HTTP each travels as a stable code
// ([ErrorCodes]); [CodeError] maps a code back to its sentinel.
package kez
