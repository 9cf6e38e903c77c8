package filecrypt

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sealer is the kez-file-v1 stream of a file as an [io.ReaderAt]: ReadAt
// encrypts the chunks that overlap the range asked for, reading their
// plaintext from the file. Calls may come in any order and from several
// goroutines at once, so that a sharer can encrypt a large file on every
// core, range by range, and hash each range as it is produced.
//
// The stream is the one a [Writer] with the same key and salt writes,
// byte for byte: chunk i is sealed under the payload key and the nonce
// of index i, with the last flag on the final chunk only, whoever asks
// for it and whenever. A chunk that straddles the edge of a range is
// sealed again by the call of the neighbouring range (the seal is
// deterministic: the same bytes both times).
type Sealer struct {
	src     io.ReaderAt
	hdr     []byte
	aead    cipher.AEAD
	plain   int64  // of the file
	size    int64  // of the stream
	chunks  uint64 // in the stream, at least 1
	scratch sync.Pool
}

// NewSealer returns the stream of the file of size bytes read from src,
// encrypted under k with a salt read from random (crypto/rand.Reader if
// nil), as [NewWriter] would write it. The file must not change while
// the stream is read: a file shorter or longer than size makes ReadAt
// fail with [ErrSourceChanged] (longer: when it seals the final chunk).
func NewSealer(src io.ReaderAt, size int64, k Key, random io.Reader) (*Sealer, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: a file of %d bytes", ErrSize, size)
	}
	hdr, aead, err := newHeader(k, random)
	if err != nil {
		return nil, err
	}
	s := &Sealer{src: src, hdr: hdr, aead: aead, plain: size, size: EncryptedSize(size),
		chunks: uint64(max(1, (size+ChunkSize-1)/ChunkSize))}
	s.scratch.New = func() any { return new([EncChunkSize]byte) }
	return s, nil
}

// Size returns the size of the stream.
func (s *Sealer) Size() int64 { return s.size }

// Header returns the stream's header: Magic then the salt.
func (s *Sealer) Header() []byte { return append([]byte(nil), s.hdr...) }

// offset returns where chunk i starts in the stream (the stream's end
// for i = s.chunks).
func (s *Sealer) offset(i uint64) int64 {
	if i >= s.chunks {
		return s.size
	}
	return int64(HeaderSize) + int64(i)*EncChunkSize
}

// ReadAt writes the bytes [off, off+len(p)) of the stream to p. Like any
// ReaderAt it returns io.EOF with fewer bytes when the range passes the
// end of the stream. It returns an error wrapping [ErrSourceChanged] if
// the file is not the size it was said to be, or the error of reading
// it.
func (s *Sealer) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("filecrypt: negative offset")
	}
	if off >= s.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > s.size-off {
		p, eof = p[:s.size-off], io.EOF
	}
	end := off + int64(len(p))
	if off < int64(HeaderSize) {
		copy(p, s.hdr[off:])
	}
	first := uint64(0)
	if off > int64(HeaderSize) {
		first = uint64((off - int64(HeaderSize)) / EncChunkSize)
	}
	for i := first; i < s.chunks && s.offset(i) < end; i++ {
		cs, ce := s.offset(i), s.offset(i+1)
		if cs >= off && ce <= end {
			// Whole in p: read the plaintext where the ciphertext goes
			// and seal it in place.
			if err := s.seal(p[cs-off:ce-off], i); err != nil {
				return 0, err
			}
			continue
		}
		// Straddles an edge of p: seal into scratch, copy the overlap.
		buf := s.scratch.Get().(*[EncChunkSize]byte)
		err := s.seal(buf[:ce-cs], i)
		if err == nil {
			lo, hi := max(cs, off), min(ce, end)
			copy(p[lo-off:hi-off], buf[lo-cs:hi-cs])
		}
		s.scratch.Put(buf)
		if err != nil {
			return 0, err
		}
	}
	return len(p), eof
}

// seal reads the plaintext of chunk i into ct and seals it there; ct is
// exactly the chunk's encrypted length.
func (s *Sealer) seal(ct []byte, i uint64) error {
	n := len(ct) - Overhead
	// A ReaderAt may return io.EOF with the last bytes of its input.
	if m, err := s.src.ReadAt(ct[:n], int64(i)*ChunkSize); m < n {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("chunk %d: %w: it ends before %d bytes", i, ErrSourceChanged, s.plain)
		}
		return err
	}
	last := i == s.chunks-1
	if last {
		// Nor longer: the stream would not be the file.
		var b [1]byte
		if m, _ := s.src.ReadAt(b[:], s.plain); m > 0 {
			return fmt.Errorf("%w: it is longer than %d bytes", ErrSourceChanged, s.plain)
		}
	}
	var nc nonce
	nc.set(i, last)
	s.aead.Seal(ct[:0], nc[:], ct[:n], nil)
	return nil
}
