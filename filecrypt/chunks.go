package filecrypt

import (
	"crypto/cipher"
	"fmt"
)

// Chunks opens the chunks of one kez-file-v1 stream whose length is known
// in advance, one at a time and in any order: for a receiver that gets the
// stream in verified pieces (Bao groups) and writes each chunk's plaintext
// where it belongs, without reading the stream from its start again.
//
// Knowing the length is what makes this safe: the last chunk is the one
// that ends the stream, so [Chunks.Open] opens chunk i with the last flag
// exactly when i is the final index. A length that is not the stream's
// (a truncated or extended stream) makes the chunks around the cut fail
// to open, as with [Reader]. The length must be one the recipient can
// trust to name this stream, such as the size bound into the blob's
// content address.
type Chunks struct {
	aead   cipher.AEAD
	size   int64  // of the stream
	plain  int64  // of the file
	chunks uint64 // in the stream, at least 1
}

// NewChunks returns the opener of the kez-file-v1 stream of size bytes
// whose header is header, under k. It returns [ErrHeader] if header is not
// a kez-file-v1 header, and [ErrSize] if no stream is size bytes long.
func NewChunks(k Key, header []byte, size int64) (*Chunks, error) {
	if len(header) != HeaderSize || string(header[:len(Magic)]) != Magic {
		return nil, ErrHeader
	}
	plain, err := PlaintextSize(size)
	if err != nil {
		return nil, err
	}
	aead, err := payloadAEAD(k, header[len(Magic):])
	if err != nil {
		return nil, err
	}
	return &Chunks{aead: aead, size: size, plain: plain, chunks: uint64(max(1, (plain+ChunkSize-1)/ChunkSize))}, nil
}

// Count returns the number of chunks in the stream (at least 1).
func (c *Chunks) Count() uint64 { return c.chunks }

// PlaintextSize returns the size of the file.
func (c *Chunks) PlaintextSize() int64 { return c.plain }

// Offset returns where chunk i (at most Count) starts in the stream;
// Offset(Count()) is the stream's length.
func (c *Chunks) Offset(i uint64) int64 {
	if i >= c.chunks {
		return c.size
	}
	return int64(HeaderSize) + int64(i)*EncChunkSize
}

// Index returns the index of the chunk that holds stream offset off (at
// least HeaderSize).
func (c *Chunks) Index(off int64) uint64 {
	return uint64((off - int64(HeaderSize)) / EncChunkSize)
}

// Len returns the encrypted length of chunk i, which must be below Count.
func (c *Chunks) Len(i uint64) int { return int(c.Offset(i+1) - c.Offset(i)) }

// Open authenticates chunk as the encrypted chunk i of the stream and
// appends its plaintext to dst, which must not overlap chunk. It returns
// an error wrapping [ErrDecrypt] if the chunk does not authenticate (or
// has not the length chunk i has), and releases nothing of it then.
func (c *Chunks) Open(dst, chunk []byte, i uint64) ([]byte, error) {
	if i >= c.chunks || len(chunk) != c.Len(i) {
		return dst, fmt.Errorf("chunk %d of %d bytes: %w", i, len(chunk), ErrDecrypt)
	}
	var n nonce
	n.set(i, i == c.chunks-1)
	out, err := c.aead.Open(dst, n[:], chunk, nil)
	if err != nil {
		return dst, fmt.Errorf("chunk %d: %w", i, ErrDecrypt)
	}
	return out, nil
}
