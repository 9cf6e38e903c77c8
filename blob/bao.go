package blob

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"lukechampine.com/blake3/bao"
)

const (
	// Group is the Bao chunk-group size as a power of two of 1 KiB BLAKE3
	// chunks: 16 KiB groups, as iroh-blobs uses. The hash does not depend
	// on it; the outboard and slice encodings do.
	Group = 4
	// GroupSize is the size of a chunk group in bytes: the unit in which
	// data is verified, and so the most a downloader refetches after an
	// interruption or discards after a corrupt group.
	GroupSize = 1 << (10 + Group)
)

// OutboardSize returns the size of the outboard of a blob of size bytes.
func OutboardSize(size int64) int64 {
	return int64(bao.EncodedSize(int(size), Group, true))
}

// checkRange reports whether [off, off+n) is a non-empty range inside a blob
// of size bytes.
func checkRange(size, off, n int64) error {
	if off < 0 || n <= 0 || off > size || n > size-off {
		return fmt.Errorf("%w: [%d, %d) of %d bytes", ErrRange, off, off+n, size)
	}
	return nil
}

// extractSlice writes the Bao slice encoding of [off, off+n) of the blob in
// data (size bytes) with its outboard to w.
func extractSlice(w io.Writer, data io.ReaderAt, outboard io.Reader, size, off, n int64) error {
	if err := checkRange(size, off, n); err != nil {
		return err
	}
	// bao.ExtractSlice wants only the groups that overlap the range.
	start := off / GroupSize * GroupSize
	end := min(size, (off+n+GroupSize-1)/GroupSize*GroupSize)
	groups := bufio.NewReaderSize(io.NewSectionReader(data, start, end-start), readBuf)
	return bao.ExtractSlice(w, groups, bufio.NewReaderSize(outboard, 64<<10), Group, uint64(off), uint64(n))
}

// Decode reads the Bao slice encoding of [off, off+n) of the blob h of size
// bytes from slice, and writes the range to dst, each 16 KiB group only once
// it has verified. It returns an error wrapping [ErrCorrupt] at the first
// group (or tree node) that does not verify, or if the slice claims another
// blob size; [ErrRange] for a range outside the blob; otherwise the error
// of slice or dst. On any error, what dst received is a verified prefix of
// the range.
func Decode(dst io.Writer, slice io.Reader, h Hash, size, off, n int64) error {
	return decode(dst, slice, h, size, off, n, nil)
}

// decode is Decode; tee, if not nil, gets the bytes of the encoding as
// they are consumed (header, nodes and groups, before they verify).
func decode(dst io.Writer, slice io.Reader, h Hash, size, off, n int64, tee io.Writer) error {
	if err := checkRange(size, off, n); err != nil {
		return err
	}
	// The slice starts with the blob length, which shapes the tree. A
	// provider could claim another length and still pass verification for
	// a range that lies away from where the two trees differ, so the
	// length must be the announced one.
	var hdr [8]byte
	if _, err := io.ReadFull(slice, hdr[:]); err != nil {
		return fmt.Errorf("read slice header: %w", err)
	}
	if got := binary.LittleEndian.Uint64(hdr[:]); got != uint64(size) {
		return fmt.Errorf("%w: slice of a %d-byte blob, want %d", ErrCorrupt, got, size)
	}
	enc := io.MultiReader(bytes.NewReader(hdr[:]), slice)
	if tee != nil {
		enc = io.TeeReader(enc, tee)
	}
	ok, err := bao.DecodeSlice(dst, enc, Group, uint64(off), uint64(n), h)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: blob %s", ErrCorrupt, h)
	}
	return nil
}

// encodeOutboard computes the outboard of the size bytes read from data into
// a new file at path, synced, and returns the root hash. data is read in
// order while the segments read before are hashed on the other cores.
func encodeOutboard(path string, data io.Reader, size int64) (Hash, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	root, err := encodeParallel(nil, f, size, true, func(p []byte, _ int64) error {
		_, err := io.ReadFull(data, p)
		return err
	})
	if err != nil {
		return Hash{}, err
	}
	if err := f.Sync(); err != nil {
		return Hash{}, err
	}
	return root, f.Close()
}

// readBuf is the read buffer of a slice coming from a source: Decode reads
// a 64-byte tree node or a 16 KiB group at a time, and a network stream
// costs a call (and a deadline) per read.
const readBuf = 256 << 10

// Get writes the bytes [off, size) of blob h (size bytes long), as src
// provides them, to w: each 16 KiB group only once it has verified, as
// [Decode] does. On error, what w received is a verified prefix of the
// range. Errors are those of Decode, of src, or the ctx error once ctx
// ends (which also closes the slice).
func Get(ctx context.Context, src Source, h Hash, size, off int64, w io.Writer) error {
	return get(ctx, src, h, size, off, w, nil)
}

// get is Get, with decode's tee.
func get(ctx context.Context, src Source, h Hash, size, off int64, w, tee io.Writer) error {
	if err := checkRange(size, off, size-off); err != nil {
		return err
	}
	rc, err := src.Slice(ctx, h, off, size-off)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	err = decode(w, bufio.NewReaderSize(rc, readBuf), h, size, off, size-off, tee)
	stop()
	rc.Close()
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}
