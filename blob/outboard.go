package blob

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
)

// A fetch of a whole blob receives its Bao tree with the data: the slice
// of [0, size) is the combined encoding, every parent node in pre-order,
// each group of data after the nodes above it; the outboard holds the
// same nodes in the same order without the data. [outboardTee] keeps the
// nodes of such a stream as Decode consumes them, so that the store has
// the outboard once the last group has verified, with no second pass
// over the file and no second hashing. A node is kept before it is
// verified, but the outboard is installed only after Decode verified the
// whole tree against the blob's hash: every node in it is then genuine.

// outboardTee writes the parent nodes of the full slice encoding of a
// blob of size bytes, written to it in order, to an outboard file. It
// tells nodes from data by the tree's shape alone, which the size fixes:
// whatever the bytes, it writes at most OutboardSize(size) bytes.
type outboardTee struct {
	f     *os.File
	w     *bufio.Writer
	size  int64
	todo  []int64 // lengths of the subtrees to come, the next last
	left  int64   // bytes left of the current node or group
	keep  bool    // the current segment is a node (or the header)
	kept  int64   // bytes written to w
	start bool
}

// newOutboardTee creates the outboard file at path for a blob of size bytes.
func newOutboardTee(path string, size int64) (*outboardTee, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	// The header (the blob length, 8 bytes) comes first.
	return &outboardTee{f: f, w: bufio.NewWriterSize(f, 64<<10), size: size, left: 8, keep: true, start: true}, nil
}

// next moves to the segment after the current one; it returns false at
// the end of the encoding.
func (t *outboardTee) next() bool {
	if t.start {
		t.start = false
		t.todo = append(t.todo, t.size)
	}
	if len(t.todo) == 0 {
		return false
	}
	n := t.todo[len(t.todo)-1]
	t.todo = t.todo[:len(t.todo)-1]
	if n <= GroupSize {
		t.left, t.keep = n, false
		return true
	}
	mid := int64(1) << (bits.Len64(uint64(n-1)) - 1)
	t.todo = append(t.todo, n-mid, mid) // left subtree first
	t.left, t.keep = 64, true
	return true
}

var errPastEncoding = errors.New("bytes past the end of the encoding")

func (t *outboardTee) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		for t.left == 0 {
			if !t.next() {
				return n - len(p), errPastEncoding
			}
		}
		c := int(min(int64(len(p)), t.left))
		if t.keep {
			if _, err := t.w.Write(p[:c]); err != nil {
				return n - len(p), err
			}
			t.kept += int64(c)
		}
		t.left -= int64(c)
		p = p[c:]
	}
	return n, nil
}

// finish syncs and closes the outboard; the encoding must have ended.
func (t *outboardTee) finish() error {
	if t.start || t.left > 0 || len(t.todo) > 0 || t.kept != OutboardSize(t.size) {
		t.f.Close()
		return fmt.Errorf("outboard: encoding cut short (%d of %d bytes of nodes)", t.kept, OutboardSize(t.size))
	}
	if err := t.w.Flush(); err != nil {
		t.f.Close()
		return err
	}
	if err := t.f.Sync(); err != nil {
		t.f.Close()
		return err
	}
	return t.f.Close()
}

// close closes the outboard file, if finish did not.
func (t *outboardTee) close() { t.f.Close() }

var _ io.Writer = (*outboardTee)(nil)
