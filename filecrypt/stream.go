package filecrypt

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// Magic starts every kez-file-v1 stream.
	Magic = "kez-file-v1\n"
	// SaltSize is the size of the random salt that follows Magic.
	SaltSize = 16
	// HeaderSize is the size of the header: Magic then the salt.
	HeaderSize = len(Magic) + SaltSize
	// ChunkSize is the plaintext size of every chunk but the last.
	ChunkSize = 64 << 10
	// Overhead is what encryption adds to each chunk (the Poly1305 tag).
	Overhead = chacha20poly1305.Overhead
	// EncChunkSize is the size of every encrypted chunk but the last.
	EncChunkSize = ChunkSize + Overhead

	// payloadInfo is the HKDF info of the payload key, so that the
	// content key itself never keys the AEAD.
	payloadInfo = "kez-file-v1 payload"
	// lastFlag is the last byte of the nonce of the final chunk.
	lastFlag = 0x01
)

// EncryptedSize returns the size of the kez-file-v1 stream of a file of n
// bytes (n >= 0): the header, the file, and one tag per chunk, with at
// least one chunk (an empty file is one empty final chunk).
func EncryptedSize(n int64) int64 {
	chunks := max(1, (n+ChunkSize-1)/ChunkSize)
	return int64(HeaderSize) + n + chunks*Overhead
}

// PlaintextSize returns the size of the file whose kez-file-v1 stream is
// size bytes long, or [ErrSize] if no stream has that size.
func PlaintextSize(size int64) (int64, error) {
	body := size - int64(HeaderSize)
	if body < Overhead {
		return 0, ErrSize
	}
	full := body / EncChunkSize
	rest := body % EncChunkSize
	var n int64
	switch {
	case rest == 0: // the last chunk is full
		n = full * ChunkSize
	case rest < Overhead || (rest == Overhead && full > 0):
		// A partial chunk shorter than a tag, or an empty final chunk
		// after full ones (never written: the last full chunk is final).
		return 0, ErrSize
	default:
		n = full*ChunkSize + rest - Overhead
	}
	return n, nil
}

// payloadAEAD derives the payload key from the content key and the salt.
//
// The salt makes the payload key unique to this stream even if a content
// key were ever used twice (re-encrypting a file under its old key after an
// error), which the fixed nonce sequence below needs: every (key, nonce)
// pair must seal one chunk only.
func payloadAEAD(k Key, salt []byte) (cipher.AEAD, error) {
	pk, err := hkdf.Key(sha256.New, k.k[:], salt, payloadInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive payload key: %w", err)
	}
	return chacha20poly1305.New(pk)
}

// nonce is the nonce of chunk i: its index as an 11-byte big-endian number,
// then lastFlag for the final chunk or 0. The index stops reordering, and
// the flag stops truncation at a chunk boundary and extension: a stream
// must end with, and only with, a chunk sealed as last.
type nonce [chacha20poly1305.NonceSize]byte

func (n *nonce) set(i uint64, last bool) {
	*n = nonce{}
	binary.BigEndian.PutUint64(n[3:11], i)
	if last {
		n[11] = lastFlag
	}
}

// Writer encrypts a file into a kez-file-v1 stream. Close must be called
// to write the final chunk; until then the stream is truncated.
type Writer struct {
	dst   io.Writer
	aead  cipher.AEAD
	buf   []byte // plaintext of the pending chunk, then its sealed form
	n     int    // plaintext bytes pending in buf
	index uint64
	err   error // sticky
}

// NewWriter writes the header of a kez-file-v1 stream under k to dst and
// returns a Writer for the file. The salt is read from random
// (crypto/rand.Reader if nil). Writes of any size are buffered into one
// chunk; nothing is held beyond it.
func NewWriter(dst io.Writer, k Key, random io.Reader) (*Writer, error) {
	hdr, aead, err := newHeader(k, random)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(hdr); err != nil {
		return nil, err
	}
	return &Writer{dst: dst, aead: aead, buf: make([]byte, EncChunkSize)}, nil
}

// newHeader returns the header of a new stream under k, with a salt read
// from random (crypto/rand.Reader if nil), and the stream's payload AEAD.
func newHeader(k Key, random io.Reader) ([]byte, cipher.AEAD, error) {
	if random == nil {
		random = rand.Reader
	}
	hdr := make([]byte, HeaderSize)
	copy(hdr, Magic)
	if _, err := io.ReadFull(random, hdr[len(Magic):]); err != nil {
		return nil, nil, fmt.Errorf("read file salt: %w", err)
	}
	aead, err := payloadAEAD(k, hdr[len(Magic):])
	if err != nil {
		return nil, nil, err
	}
	return hdr, aead, nil
}

// Write encrypts p. A chunk is written to the underlying writer once it is
// full and more data follows, since only then is it known not to be last.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := 0
	for len(p) > 0 {
		if w.n == ChunkSize {
			if err := w.flush(false); err != nil {
				return total, err
			}
		}
		c := copy(w.buf[w.n:ChunkSize], p)
		w.n += c
		p = p[c:]
		total += c
	}
	return total, nil
}

// Close seals and writes the final chunk. It does not close the underlying
// writer. Writes after Close fail.
func (w *Writer) Close() error {
	if w.err != nil {
		if errors.Is(w.err, errClosed) {
			return nil
		}
		return w.err
	}
	if err := w.flush(true); err != nil {
		return err
	}
	w.err = errClosed
	return nil
}

var errClosed = errors.New("filecrypt: write after close")

func (w *Writer) flush(last bool) error {
	var n nonce
	n.set(w.index, last)
	ct := w.aead.Seal(w.buf[:0], n[:], w.buf[:w.n], nil)
	if _, err := w.dst.Write(ct); err != nil {
		w.err = err
		return err
	}
	w.index++
	if w.index == 0 { // 2^64 chunks: unreachable, but never reuse a nonce
		w.err = errors.New("filecrypt: too many chunks")
		return w.err
	}
	w.n = 0
	return nil
}

// Reader decrypts a kez-file-v1 stream. It returns the plaintext of a chunk
// only after the chunk has authenticated, and io.EOF only after the final
// chunk has authenticated and no byte follows it. Anything else is an error
// wrapping [ErrDecrypt], [ErrTruncated] or [ErrTrailingData], or the error of
// the source; errors are sticky.
type Reader struct {
	src   io.Reader
	aead  cipher.AEAD
	buf   []byte // EncChunkSize+1: a chunk and one byte of look-ahead
	peek  int    // the look-ahead byte, or -1 if none
	plain []byte // ChunkSize: the decrypted chunk
	out   []byte // decrypted bytes not yet returned (in plain)
	index uint64
	done  bool // the final chunk has been returned
	err   error
}

// NewReader reads the header of a kez-file-v1 stream from src and returns a
// Reader of the file encrypted under k. It returns [ErrHeader] if the
// stream does not start with a kez-file-v1 header.
func NewReader(src io.Reader, k Key) (*Reader, error) {
	hdr := make([]byte, HeaderSize)
	if _, err := io.ReadFull(src, hdr); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrHeader
		}
		return nil, err
	}
	if string(hdr[:len(Magic)]) != Magic {
		return nil, ErrHeader
	}
	aead, err := payloadAEAD(k, hdr[len(Magic):])
	if err != nil {
		return nil, err
	}
	return &Reader{src: src, aead: aead, buf: make([]byte, EncChunkSize+1),
		peek: -1, plain: make([]byte, ChunkSize)}, nil
}

// Read reads decrypted bytes into p.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			r.err = io.EOF
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
		if len(p) == 0 {
			return 0, nil
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next reads, authenticates and decrypts the next chunk into r.out.
func (r *Reader) next() error {
	start := 0
	if r.peek >= 0 {
		r.buf[0] = byte(r.peek)
		start, r.peek = 1, -1
	}
	n, err := io.ReadFull(r.src, r.buf[start:])
	n += start
	switch {
	case err == nil:
		// A full chunk and one more byte: the chunk is not the last.
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// The source ended inside this read: this chunk must be last.
		return r.open(r.buf[:n], true)
	default:
		return err
	}
	if err := r.open(r.buf[:EncChunkSize], false); err != nil {
		return err
	}
	r.peek = int(r.buf[EncChunkSize]) // starts the next chunk
	return nil
}

// open authenticates chunk as chunk r.index (last or not) and sets r.out.
func (r *Reader) open(chunk []byte, last bool) error {
	if len(chunk) < Overhead {
		return fmt.Errorf("chunk %d: %w", r.index, ErrTruncated)
	}
	if last && len(chunk) == Overhead && r.index > 0 {
		// An empty final chunk is written only for an empty file.
		return fmt.Errorf("chunk %d: %w", r.index, ErrDecrypt)
	}
	var n nonce
	n.set(r.index, last)
	// Not in place: on failure Open may wipe its output, and the retry
	// below needs the ciphertext.
	out, err := r.aead.Open(r.plain[:0], n[:], chunk, nil)
	if err != nil {
		// Tell truncation and extension from tampering: a full chunk that
		// opens with the other flag was cut short after, or followed by
		// bytes after, a genuine chunk. Trying the other flag reveals
		// nothing: it is the same check an attacker could run, and the
		// chunk is rejected either way.
		n.set(r.index, !last)
		if len(chunk) == EncChunkSize {
			if _, err2 := r.aead.Open(r.plain[:0], n[:], chunk, nil); err2 == nil {
				if last {
					return fmt.Errorf("chunk %d: %w", r.index, ErrTruncated)
				}
				return fmt.Errorf("chunk %d: %w", r.index, ErrTrailingData)
			}
		}
		return fmt.Errorf("chunk %d: %w", r.index, ErrDecrypt)
	}
	r.out = out
	r.index++
	r.done = last
	return nil
}
