package blob

import (
	"errors"
	"io"
)

// WriteBehind writes to a file on a goroutine of its own, so that copying
// the bytes into the page cache (a system call that costs as much CPU as
// hashing them) overlaps the work that produces them: hashing and
// outboard encoding in an import, verification and decryption in a
// download. The producer writes ([WriteBehind.Write]), or fills buffers
// taken with [WriteBehind.Buffer] and hands them back, in order, with
// [WriteBehind.Submit]. Each buffer is written whole before the next, and
// only then is the writer's callback told the total written, so that a
// caller records only bytes the file has (a [Syncer] hears of them after
// the write, never before).
//
// Memory is bounded: a fixed number of buffers circulate between the two
// goroutines.
type WriteBehind struct {
	w      io.Writer
	wrote  func(n int64) error
	full   chan []byte
	empty  chan []byte
	failed chan struct{} // closed at the first error, err set
	done   chan struct{}
	err    error
	cur    []byte // the buffer Write fills, if any
	closed bool
}

// errClosedWriter: a WriteBehind used after Close.
var errClosedWriter = errors.New("write-behind writer closed")

// NewWriteBehind starts writing to w with buffers buffers of size bytes.
// buffers must be at least 1; 2 or 3 let the producer fill one while
// another is written. wrote, if not nil, is called on the writer's
// goroutine after each buffer is written (an empty one too), with the
// bytes written in all; its error stops the writer as a write error does.
func NewWriteBehind(w io.Writer, buffers, size int, wrote func(n int64) error) *WriteBehind {
	wb := &WriteBehind{w: w, wrote: wrote, full: make(chan []byte, buffers), empty: make(chan []byte, buffers),
		failed: make(chan struct{}), done: make(chan struct{})}
	for range buffers {
		wb.empty <- make([]byte, 0, size)
	}
	go wb.run()
	return wb
}

func (wb *WriteBehind) run() {
	defer close(wb.done)
	var total int64
	for b := range wb.full {
		if wb.err == nil {
			var err error
			if len(b) > 0 {
				_, err = wb.w.Write(b)
			}
			total += int64(len(b))
			if err == nil && wb.wrote != nil {
				err = wb.wrote(total)
			}
			if err != nil {
				wb.err = err
				close(wb.failed)
			}
		}
		wb.empty <- b[:0]
	}
}

// Buffer returns an empty buffer to fill, waiting for the writer to be
// done with one; or the error of an earlier write or callback, after
// which nothing more is written.
func (wb *WriteBehind) Buffer() ([]byte, error) {
	if wb.closed {
		return nil, errClosedWriter
	}
	select {
	case <-wb.failed:
		return nil, wb.err
	default:
	}
	select {
	case b := <-wb.empty:
		return b, nil
	case <-wb.failed:
		return nil, wb.err
	}
}

// Submit hands b, a buffer from Buffer, to the writer, which writes it
// after those submitted before. Submitting after an error is harmless:
// nothing more is written.
func (wb *WriteBehind) Submit(b []byte) { wb.full <- b }

// Write copies p into buffers and submits each once full. It returns the
// error of an earlier write, if any.
func (wb *WriteBehind) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if wb.cur == nil {
			b, err := wb.Buffer()
			if err != nil {
				return n - len(p), err
			}
			wb.cur = b
		}
		c := copy(wb.cur[len(wb.cur):cap(wb.cur)], p)
		wb.cur = wb.cur[:len(wb.cur)+c]
		p = p[c:]
		if len(wb.cur) == cap(wb.cur) {
			wb.Submit(wb.cur)
			wb.cur = nil
		}
	}
	return n, nil
}

// Close submits what Write buffered, waits for every buffer to be
// written and its callback to run, and returns the first error. It does
// not close the underlying writer.
func (wb *WriteBehind) Close() error {
	if wb.closed {
		<-wb.done
		return wb.err
	}
	if wb.cur != nil {
		wb.Submit(wb.cur)
		wb.cur = nil
	}
	wb.closed = true
	close(wb.full)
	<-wb.done
	return wb.err
}
