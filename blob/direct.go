package blob

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"unsafe"
)

// dioAlign is the alignment of the offsets, lengths and memory of direct
// writes: the largest logical block size of common disks.
const dioAlign = 4096

// directWriter writes the data of a new blob with direct I/O where the
// system has it (O_DIRECT on Linux), bypassing the page cache: a blob
// being imported is not read again soon, and on this project's VMs
// copying it into newly allocated page-cache pages cost 1.5-2.5 s of
// system time per GiB (pages the hypervisor had taken back by free page
// reporting), against 0.1-0.2 s for direct writes. A write whose offset
// or memory is not aligned, the unaligned tail of a blob, and every write
// after the file system refuses a direct one, go through buffered; the
// file is synced once at the end either way, through buffered, which
// also flushes the direct writes' metadata.
type directWriter struct {
	direct   *os.File // nil: buffered only
	buffered *os.File
	off      atomic.Bool // direct writes refused: buffered from now on
}

// newDirectWriter opens f's file again for direct writes; without
// direct I/O it writes to f only.
//
// The direct descriptor is opened by f's name, not following a link and
// without blocking on a FIFO, and used only if it is the same file as f
// (not one planted in its place, as in a user's folder): otherwise, or
// where direct I/O is not supported, every write goes through f.
func newDirectWriter(f *os.File) *directWriter {
	w := &directWriter{buffered: f}
	if d, err := openDirect(f.Name()); err == nil {
		fi, err1 := f.Stat()
		di, err2 := d.Stat()
		if err1 == nil && err2 == nil && os.SameFile(fi, di) {
			w.direct = d
		} else {
			d.Close()
		}
	}
	return w
}

func (w *directWriter) WriteAt(p []byte, off int64) (int, error) {
	n := len(p) &^ (dioAlign - 1)
	if w.direct == nil || w.off.Load() || n == 0 || off%dioAlign != 0 || uintptr(unsafe.Pointer(&p[0]))%dioAlign != 0 {
		return w.buffered.WriteAt(p, off)
	}
	m, err := w.direct.WriteAt(p[:n], off)
	if err != nil {
		if !errors.Is(err, errDirectRefused) && !isInvalid(err) {
			return m, err
		}
		// Refused (alignment or file system): buffered from here on,
		// this write again in whole.
		w.off.Store(true)
		return w.buffered.WriteAt(p, off)
	}
	if n < len(p) {
		k, err := w.buffered.WriteAt(p[n:], off+int64(n))
		return m + k, err
	}
	return m, nil
}

// Close closes the direct descriptor, not f.
func (w *directWriter) Close() error {
	if w.direct == nil {
		return nil
	}
	return w.direct.Close()
}

var _ io.WriterAt = (*directWriter)(nil)

// errDirectRefused stands for a refused direct write where the system
// has no EINVAL to test.
var errDirectRefused = errors.New("direct write refused")

// alignedBuffer returns n bytes (a multiple of dioAlign) whose first byte
// is at an address aligned for direct I/O.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+dioAlign)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & (dioAlign - 1))
	return b[skip : skip+n : skip+n]
}
