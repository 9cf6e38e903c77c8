package filecrypt

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"unsafe"
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
	view    Viewer // src, if it is one
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
	s.view, _ = src.(Viewer)
	return s, nil
}

// viewChunks is the most chunks a Sealer seals from one view: 8 MiB of
// plaintext, more than a 4 MiB range of the stream touches.
const viewChunks = 128

// A Viewer is a source that can lend its bytes in place, such as a file
// mapped into memory: a [Sealer] whose source is one seals each chunk
// straight from the source's bytes into the stream, instead of copying
// the plaintext first (which costs about a third as much CPU as the
// encryption itself).
type Viewer interface {
	io.ReaderAt
	// View returns the n bytes of the source at off, and a function the
	// Sealer calls, once, when done with them. A Sealer that reads them
	// and faults (a mapped file that shrank, say) fails with
	// [ErrSourceChanged] rather than crashing. If View fails, the
	// Sealer reads the range with ReadAt instead.
	View(off int64, n int) (b []byte, release func(), err error)
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
	for i := first; i < s.chunks && s.offset(i) < end; {
		// The chunks of this batch: those in p, at most viewChunks.
		last := i
		for last+1 < s.chunks && s.offset(last+1) < end && last+1-i < viewChunks {
			last++
		}
		if s.view != nil {
			lo, hi := int64(i)*ChunkSize, min(int64(last+1)*ChunkSize, s.plain)
			if hi > lo {
				if b, release, err := s.view.View(lo, int(hi-lo)); err == nil {
					err = s.sealView(p, off, end, i, last, b, lo)
					release()
					if err != nil {
						return 0, err
					}
					i = last + 1
					continue
				}
			}
		}
		for ; i <= last; i++ {
			// Read the plaintext where the ciphertext goes and seal it there.
			if err := s.place(p, off, end, i, func(ct []byte) error { return s.seal(ct, i) }); err != nil {
				return 0, err
			}
		}
	}
	return len(p), eof
}

// sealView seals chunks first to last into p, which holds the stream's
// bytes [off, end), from pt, the plaintext of those chunks, which starts
// at byte base of the file. A fault reading pt is [ErrSourceChanged].
func (s *Sealer) sealView(p []byte, off, end int64, first, last uint64, pt []byte, base int64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// Only a fault in the pages of pt: anything else is a bug.
			if f, ok := r.(interface{ Addr() uintptr }); ok && len(pt) > 0 && inPages(f.Addr(), pt) {
				err = fmt.Errorf("%w: it could not be read as it was mapped (it shrank?)", ErrSourceChanged)
				return
			}
			panic(r)
		}
	}()
	for i := first; i <= last; i++ {
		cs, ce := s.offset(i), s.offset(i+1)
		src := pt[int64(i)*ChunkSize-base : int64(i)*ChunkSize-base+(ce-cs-Overhead)]
		if err := s.place(p, off, end, i, func(ct []byte) error { return s.sealFrom(ct, src, i) }); err != nil {
			return err
		}
	}
	return nil
}

// place has seal write chunk i's ciphertext (exactly its encrypted
// length) where it goes in p, which holds the stream's bytes [off, end):
// in place if the chunk is whole in p, else into scratch, of which the
// overlap with p is copied.
func (s *Sealer) place(p []byte, off, end int64, i uint64, seal func(ct []byte) error) error {
	cs, ce := s.offset(i), s.offset(i+1)
	if cs >= off && ce <= end {
		return seal(p[cs-off : ce-off])
	}
	buf := s.scratch.Get().(*[EncChunkSize]byte)
	defer s.scratch.Put(buf)
	if err := seal(buf[:ce-cs]); err != nil {
		return err
	}
	lo, hi := max(cs, off), min(ce, end)
	copy(p[lo-off:hi-off], buf[lo-cs:hi-cs])
	return nil
}

// inPages reports whether addr is in a memory page that holds bytes of b
// (not empty).
func inPages(addr uintptr, b []byte) bool {
	pg := uintptr(os.Getpagesize())
	lo := uintptr(unsafe.Pointer(&b[0])) &^ (pg - 1)
	hi := (uintptr(unsafe.Pointer(&b[0])) + uintptr(len(b)) + pg - 1) &^ (pg - 1)
	return addr >= lo && addr < hi
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
	return s.sealFrom(ct, ct[:n], i)
}

// checkEnd fails with ErrSourceChanged unless the source still ends at
// exactly s.plain bytes: its last byte is there and nothing after it. A
// chunk read in full is not proof enough: a mapped file cut inside its
// last page reads as zeros up to the page's end, not as a fault.
func (s *Sealer) checkEnd() error {
	var b [2]byte
	at, want := s.plain-1, 1
	if s.plain == 0 {
		at, want = 0, 0
	}
	m, err := s.src.ReadAt(b[:want+1], at)
	switch {
	case m > want:
		return fmt.Errorf("%w: it is longer than %d bytes", ErrSourceChanged, s.plain)
	case m < want && (err == nil || errors.Is(err, io.EOF)):
		return fmt.Errorf("%w: it ends before %d bytes", ErrSourceChanged, s.plain)
	case m < want:
		return err
	}
	return nil
}

// sealFrom seals pt, the plaintext of chunk i, into ct, exactly the
// chunk's encrypted length; pt is ct's start or does not overlap it.
func (s *Sealer) sealFrom(ct, pt []byte, i uint64) error {
	last := i == s.chunks-1
	if last {
		if err := s.checkEnd(); err != nil {
			return err
		}
	}
	var nc nonce
	nc.set(i, last)
	s.aead.Seal(ct[:0], nc[:], pt, nil)
	return nil
}
