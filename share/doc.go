// Package share implements the two wire formats of kez file sharing: the
// [Announcement] a sender puts in a file_share chat message, and the signed,
// per-recipient encrypted shared-files [Manifest] a user's node serves.
//
// Both carry the same description of a shared file, a [File]: the content
// address and size of its kez-file-v1 blob, a display name that is never a
// path ([SanitizeName], [CheckName]), the plaintext size, an optional media
// type and the time of sharing. One validation, [File.Validate], covers it
// wherever it appears.
//
// An announcement hands the file's content key to one recipient, wrapped
// with [filecrypt.Wrap] (bound to the blob's address), together with the
// multiaddrs where the sender's node can be reached. It carries no peer ID:
// the sender's node key is its primary key (DESIGN §5), so the receiver
// dials the peer ID of the key that signed the chat message, and nothing in
// the announcement can point it at another node.
//
// A manifest is {"payload": <base64>, "sig": <base64>} like a sigchain
// event, signed over [ManifestContext] and the exact payload bytes; each
// entry is a box sealed for one recipient with [message.WrapKey] and
// ChaCha20-Poly1305, so [Manifest.Open] shows a reader only what it can
// decrypt. The owner's sigchain names the current manifest by its BLAKE3
// hash and size ([Pointer]).
//
// docs/kez-file-v1.md ("Announcements and manifests") has the byte layout
// and testdata/vectors.json test vectors. The package is pure: no I/O, no
// clock, no logging; errors never contain key material.
package share
