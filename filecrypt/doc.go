// Package filecrypt implements kez-file-v1, the encryption of a shared file
// under its own random 32-byte content [Key].
//
// The file is encrypted as a stream of 64 KiB chunks, each sealed with
// ChaCha20-Poly1305 under a key derived from the content key and a random
// salt, with a nonce made of the chunk's index and a flag marking the last
// chunk (the STREAM construction, as in age's payload). A reader therefore
// detects reordered, dropped, duplicated or altered chunks, a truncated
// stream and data appended after the end; it releases the plaintext of a
// chunk only once that chunk has authenticated. [Writer] and [Reader] hold
// one chunk in memory whatever the size of the file; [Chunks] opens the
// chunks of a stream whose length is known one by one, in any order, for
// a receiver that decrypts verified pieces as they arrive.
// docs/kez-file-v1.md has the byte layout.
//
// The content key goes to each recipient wrapped with [Wrap] (the
// [message.WrapKey] construction, bound to the blob's content address).
//
// The package does no I/O of its own and never logs; errors never contain
// key material or plaintext.
package filecrypt
