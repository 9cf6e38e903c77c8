// Package message implements kez-msg-v2, the end-to-end encryption of 1:1
// chat messages, and the wrapping of 32-byte content keys for one recipient.
//
// A message is one JSON [Envelope]. Each party holds an [Identity], made
// from its key pair with [NewIdentity]: it keeps what every message with a
// peer shares (the X25519 shared secret), and [Identity.Close] clears it.
// The sender seals a [Plaintext] for one recipient with [Seal]; the
// recipient parses the bytes with [Identity.Parse] (a server, holding no
// identity, with [Parse]) and opens the envelope with [Envelope.Open]
// against the sender's pinned key. The key of every message is derived with
// HKDF-SHA256 from the X25519 shared secret of the two parties' primary
// keys and a fresh random salt; the body is sealed with ChaCha20-Poly1305
// under that single-use key; the envelope carries a commitment to the key,
// and the sender's ed25519 key signs a transcript of fixed-length fields
// with the ciphertext last, so that the signed bytes determine the envelope
// and, through the commitment, its one plaintext. docs/kez-msg-v2.md has
// the byte layout and testdata/vectors.json the test vectors.
//
// Seal writes v2 only; Parse and Open also read kez-msg-v1
// (docs/kez-msg-v1.md), for the messages sent before the upgrade.
//
// [WrapKey] and [UnwrapKey] use the same key derivation, under their own
// domain-separation label (kez-wrap-v1), to hand a random content key (a
// file's) to one recipient.
//
// The package does no I/O and never logs; errors never contain key material
// or plaintext. No secret lives in a package variable.
package message
