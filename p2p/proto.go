package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"kez.lat/kez/blob"
)

// BlobProtocol is the libp2p protocol ID of blob transfer. A stream
// carries one request and its answer:
//
//	request  = hash (32 bytes) || offset (8 bytes, big-endian) || length (8 bytes, big-endian)
//	response = status (1 byte) || on statusOK: the Bao slice of [offset, offset+length)
//
// The slice is what [blob.Store.WriteSlice] writes; the getter verifies it
// group by group with [blob.Decode].
const BlobProtocol = "/kez/blob/1"

// requestSize is the size of a blob request.
const requestSize = 32 + 8 + 8

// Response status bytes.
const (
	statusOK byte = iota
	// statusNotShared: the blob is not in the store or not shared with the
	// requester: one answer for both, so a stranger learns nothing of what
	// the node holds.
	statusNotShared
	statusBadRange
	statusBusy
)

// Errors of a fetch, as the serving node answered.
var (
	// ErrNotShared: the peer does not share this blob with us (or does not
	// hold it).
	ErrNotShared = errors.New("the peer does not share this file with you")
	// ErrBusy: the peer is serving too many transfers; try again later.
	ErrBusy = errors.New("the peer is busy")
	// ErrProtocol: the peer answered something that is not this protocol.
	ErrProtocol = errors.New("malformed blob protocol message")
)

// request is one blob request.
type request struct {
	Hash   blob.Hash
	Offset int64
	Length int64
}

func (r request) marshal() []byte {
	b := make([]byte, requestSize)
	copy(b, r.Hash[:])
	binary.BigEndian.PutUint64(b[32:], uint64(r.Offset))
	binary.BigEndian.PutUint64(b[40:], uint64(r.Length))
	return b
}

// parseRequest decodes a request from exactly requestSize bytes. It
// returns an error wrapping ErrProtocol for another size, a negative or
// empty range, or one whose end overflows.
func parseRequest(b []byte) (request, error) {
	if len(b) != requestSize {
		return request{}, fmt.Errorf("%w: request of %d bytes", ErrProtocol, len(b))
	}
	var r request
	copy(r.Hash[:], b)
	off, n := binary.BigEndian.Uint64(b[32:]), binary.BigEndian.Uint64(b[40:])
	if off > 1<<62 || n == 0 || n > 1<<62 {
		return request{}, fmt.Errorf("%w: range %d+%d", ErrProtocol, off, n)
	}
	r.Offset, r.Length = int64(off), int64(n)
	return r, nil
}

// readRequest reads one request from r.
func readRequest(r io.Reader) (request, error) {
	b := make([]byte, requestSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return request{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return parseRequest(b)
}

// statusError maps a response status to the error a getter returns.
func statusError(s byte) error {
	switch s {
	case statusOK:
		return nil
	case statusNotShared:
		return ErrNotShared
	case statusBadRange:
		return blob.ErrRange
	case statusBusy:
		return ErrBusy
	}
	return fmt.Errorf("%w: status %d", ErrProtocol, s)
}
