// Package message implements kez-msg-v1, the end-to-end encryption of 1:1
// chat messages, and the wrapping of 32-byte content keys for one recipient.
//
// A message is one JSON [Envelope]: the sender seals a [Plaintext] for one
// recipient with [Seal], the recipient parses the bytes with [Parse] and
// opens the envelope with [Envelope.Open] against the sender's pinned key.
// The key of every message is derived with HKDF-SHA256 from the X25519 shared
// secret of the two parties' primary keys and a fresh random salt; the body
// is sealed with ChaCha20-Poly1305 under that single-use key, and the whole
// envelope is signed with the sender's ed25519 key. docs/kez-msg-v1.md has
// the byte layout and testdata/vectors.json the test vectors.
//
// [WrapKey] and [UnwrapKey] use the same construction, under their own
// domain-separation label, to hand a random content key (a file's) to one
// recipient.
//
// The package does no I/O and never logs; errors never contain key material
// or plaintext.
package message
