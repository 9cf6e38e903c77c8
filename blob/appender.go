package blob

import (
	"io"
	"os"
)

// Appender writes to a file from an offset on, in order, with direct I/O
// where the system and the file system allow it (see directWriter):
// a download's bytes are written once and not read again soon, and on
// this project's VMs copying them into page-cache pages cost more system
// CPU than verifying them. Writes whose memory or offset are not aligned
// for direct I/O, and the unaligned tail, go through f. Durability is
// f's: syncing f (an fsync of the file, whichever descriptor) makes the
// direct writes durable too, so a [Syncer] on f works unchanged.
type Appender struct {
	w   *directWriter
	off int64
}

// NewAppender returns an Appender writing to f from off on.
func NewAppender(f *os.File, off int64) *Appender {
	return &Appender{w: newDirectWriter(f), off: off}
}

// Write writes p at the Appender's offset and moves it on.
func (a *Appender) Write(p []byte) (int, error) {
	n, err := a.w.WriteAt(p, a.off)
	a.off += int64(n)
	return n, err
}

// Close closes the direct descriptor, not f.
func (a *Appender) Close() error { return a.w.Close() }

var _ io.WriteCloser = (*Appender)(nil)
