// Package mnemonic turns the 32-byte ed25519 seed of a kez primary key into
// the 24 words of its paper backup and back.
//
// The words are the BIP-39 English encoding of the seed used directly as
// BIP-39 entropy: 256 bits of seed plus an 8-bit checksum (the first byte of
// SHA-256 of the seed) make 24 indexes of 11 bits into the 2048-word list.
// The PBKDF2 "seed" step of BIP-39 is not used, so the same words give the
// same key forever, and the words are the key: never log them, put them in an
// error or send them anywhere.
//
// [ToSeed] accepts words in any case separated by any white space, and
// reports [ErrWordCount], [ErrChecksum] or an [*UnknownWordsError] that
// carries suggestions for each word not in the list.
package mnemonic
