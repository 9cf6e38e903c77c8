// Package sigchain reads, writes and verifies sigchains: the signed,
// append-only lists of what kez users say about themselves (endpoints,
// identity claims, shared files). It is pure: no I/O, no clock, no logging.
//
// # Format (v1)
//
// An event travels as a JSON object with two fields:
//
//	{"payload": "<base64 of the payload bytes>", "sig": "<base64 of 64 bytes>"}
//
// (standard padded base64, RFC 4648 §4), at most [MaxEventSize] bytes. The
// payload is a JSON object with exactly these fields:
//
//	{"v":1, "chain":"ed25519:<hex>", "seqno":N, "prev":"<hex>"|null,
//	 "ctime":<unix seconds>, "type":"<name>", "body":{...}}
//
// seqno counts from 1; prev is the lowercase hex SHA-256 of the previous
// event's payload bytes, null exactly at seqno 1; integers are plain
// decimal from 0 to 2^53-1 (no sign, fraction, exponent or leading zero);
// type is a lowercase name (a letter, then a-z, 0-9, _; at most 32 bytes);
// body is an object, checked by its type's rules for the types this
// package knows ([TypeAddEndpoint], [TypeRemoveEndpoint], [TypeAddClaim],
// [TypeRevokeClaim], [TypeSetSharedFiles]) and kept but ignored otherwise.
// No object anywhere in an event may have the same field twice.
//
// The signature is ed25519, by the chain key, over [SignatureContext]
// ("kez-sigchain-v1" and a NUL byte) followed by the exact payload bytes.
// testdata/vectors.json holds a worked chain, with its payloads, signatures,
// hashes and resulting state, and chains that must be refused, so another
// implementation can check itself.
//
// # Why it is safe
//
//   - Domain separation: the context string is signed first, so an event
//     signature is never valid as a registration, a message or anything
//     else the same key signs, and no other signature is valid as an event.
//   - Exact-bytes signing: the signature and the hash cover the payload
//     bytes as sent. Nothing is re-serialised, so two implementations never
//     disagree on what was signed, and JSON canonicalisation bugs cannot
//     forge or break a chain. The strict reading (no unknown or duplicated
//     fields, field names matched exactly, canonical base64 and integers,
//     valid UTF-8) leaves each payload a single meaning in every decoder.
//   - Hash links: each event names the hash of its predecessor's payload
//     and its own seqno, so a chain is one linear history from seqno 1; an
//     event cannot be dropped, reordered, replaced or inserted without
//     breaking the next link or a signature. The hash is over the payload
//     only, so it does not depend on the signature.
//   - The chain key is inside every payload and must be the key the chain is
//     verified against, so an event cannot be replayed into another chain.
//
// # Servers and clients
//
// A server stores an event after [ParseEvent] and [VerifyAppend] (and
// [CheckCtime] against its clock). A client never trusts the server: it
// verifies the whole chain with [VerifyChain] (or a tail with
// [State.Extend]), checks that the chain key is the key the registry binds
// to the handle, and remembers the tail as a [Pin]; a later answer that has
// lost or changed the pinned event fails with [ErrRollback] or
// [ErrRewritten]. A server showing different users different histories is
// not detectable without a global log: a known v0 limitation.
//
// Writers build events with [Next].
package sigchain
