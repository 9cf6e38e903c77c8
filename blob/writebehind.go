package blob

import (
	"errors"
	"io"
)

// WriteBehind writes to a file on a goroutine of its own, so that copying
// the bytes into the page cache (a system call that costs as much CPU as
// hashing them) overlaps the work that produces them: hashing and
// outboard encoding in an import, decryption in a download. The producer
// fills buffers taken with [WriteBehind.Buffer] and hands them back, in
// order, with [WriteBehind.Submit]; or it just writes ([WriteBehind.Write]).
// Each buffer is written whole before the next, and its callback runs
// after it was written, so that a caller records only bytes the file has
// (a [Syncer] is told after the write, never before).
//
// Memory is bounded: a fixed number of buffers circulate between the two
// goroutines.
type WriteBehind struct {
	w      io.Writer
	full   chan pending
	empty  chan []byte
	failed chan struct{} // closed at the first error, err set
	done   chan struct{}
	err    error
	cur    []byte // the buffer Write fills, if any
	closed bool
}

// pending is a buffer to write, and what to do once it is written.
type pending struct {
	b    []byte
	then func() error
}

// errClosedWriter: a WriteBehind used after Close.
var errClosedWriter = errors.New("write-behind writer closed")

// NewWriteBehind starts writing to w with buffers buffers of size bytes.
// buffers must be at least 1; 2 or 3 let the producer fill one while
// another is written.
func NewWriteBehind(w io.Writer, buffers, size int) *WriteBehind {
	wb := &WriteBehind{w: w, full: make(chan pending, buffers), empty: make(chan []byte, buffers),
		failed: make(chan struct{}), done: make(chan struct{})}
	for range buffers {
		wb.empty <- make([]byte, 0, size)
	}
	go wb.run()
	return wb
}

func (wb *WriteBehind) run() {
	defer close(wb.done)
	for p := range wb.full {
		if wb.err == nil {
			var err error
			if len(p.b) > 0 {
				_, err = wb.w.Write(p.b)
			}
			if err == nil && p.then != nil {
				err = p.then()
			}
			if err != nil {
				wb.err = err
				close(wb.failed)
			}
		}
		wb.empty <- p.b[:0]
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
// after those submitted before and then calls then, if not nil, on its
// own goroutine. An empty b is not written, but then runs. Submitting
// after an error is harmless: nothing more is written.
func (wb *WriteBehind) Submit(b []byte, then func() error) {
	wb.full <- pending{b: b, then: then}
}

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
			wb.Submit(wb.cur, nil)
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
		wb.Submit(wb.cur, nil)
		wb.cur = nil
	}
	wb.closed = true
	close(wb.full)
	<-wb.done
	return wb.err
}
