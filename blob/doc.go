// Package blob names, stores and moves encrypted file blobs by content
// address, with BLAKE3 Bao verified streaming.
//
// A blob's [Hash] is the BLAKE3-256 of its bytes (for a shared file, the
// kez-file-v1 stream of package filecrypt). A [Store] is a directory that
// keeps each blob beside its Bao outboard (16 KiB chunk groups), serves any
// byte range of it as a Bao slice ([Store.WriteSlice]), and downloads blobs
// from a [Source] ([Store.Fetch]): every 16 KiB group is verified against the
// hash before a byte of it is written, only verified bytes reach the
// partial file, and an interrupted download resumes from the verified
// length. An import ([Store.Import], [Store.ImportAt]) hashes, encodes
// and writes a blob in 4 MiB subtrees on every core. docs/kez-file-v1.md
// has the formats and the directory layout.
//
// The package knows nothing of the network: package p2p provides a Source
// over libp2p streams, and a Store is itself a Source (for tests and local
// copies).
package blob
