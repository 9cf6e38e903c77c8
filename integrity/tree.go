package integrity

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Hash is a SHA-256 hash: a leaf hash, an interior node or a tree root.
type Hash [sha256.Size]byte

// String returns the standard padded base64 of h, the form of a C2SP
// checkpoint's root hash line.
func (h Hash) String() string { return base64.StdEncoding.EncodeToString(h[:]) }

// Bytes returns the 32 bytes of h.
func (h Hash) Bytes() []byte { return h[:] }

// MarshalText encodes h as standard padded base64.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes standard padded base64 of exactly 32 bytes.
func (h *Hash) UnmarshalText(b []byte) error {
	d, err := base64.StdEncoding.Strict().DecodeString(string(b))
	if err != nil || len(d) != len(h) {
		return errors.New("hash: want 32 bytes in standard padded base64")
	}
	copy(h[:], d)
	return nil
}

// LeafHash is the RFC 6962 hash of a leaf: SHA-256(0x00 || data). The
// prefix bytes keep a leaf from ever hashing like an interior node (second
// preimages), which is what lets a later key-transparency log issue
// inclusion and consistency proofs over the same tree.
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// nodeHash is the RFC 6962 hash of an interior node: SHA-256(0x01 || l || r).
func nodeHash(l, r Hash) Hash {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l[:])
	h.Write(r[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// Tree is an append-only RFC 6962 Merkle tree held as its compact range:
// the roots of the perfect subtrees that make up its first Size leaves,
// largest first, one per bit set in Size. That is at most 64 hashes
// whatever the size, enough to append further leaves and to compute the
// root (the tree head), but not to prove inclusion: proofs need the tiles
// a transparency log would store (C2SP tlog-tiles), which can be computed
// from the same leaves later.
type Tree struct {
	Size  uint64 `json:"size"`
	Peaks []Hash `json:"peaks,omitempty"`
}

// Append adds one leaf (its hash, see LeafHash).
func (t *Tree) Append(leaf Hash) {
	// Merge the new subtree of one leaf with the peaks of equal size, as
	// many as trailing one bits in Size.
	h := leaf
	for n := t.Size; n&1 == 1; n >>= 1 {
		h = nodeHash(t.Peaks[len(t.Peaks)-1], h)
		t.Peaks = t.Peaks[:len(t.Peaks)-1]
	}
	t.Peaks = append(t.Peaks, h)
	t.Size++
}

// Root returns the RFC 6962 Merkle tree hash of the leaves appended so far
// (SHA-256 of nothing for an empty tree).
func (t Tree) Root() Hash {
	if t.Size == 0 {
		return sha256.Sum256(nil)
	}
	h := t.Peaks[len(t.Peaks)-1]
	for i := len(t.Peaks) - 2; i >= 0; i-- {
		h = nodeHash(t.Peaks[i], h)
	}
	return h
}

// Clone returns a copy of t that does not share its peaks.
func (t Tree) Clone() Tree {
	return Tree{Size: t.Size, Peaks: append([]Hash(nil), t.Peaks...)}
}

// valid reports whether the peaks fit the size.
func (t Tree) valid() bool { return len(t.Peaks) == bits.OnesCount64(t.Size) }

// Checkpoint records how far the registry projection has hashed the log:
// the tree over every event up to stream sequence Seq, and the leaf hash
// of the event at Seq, so a log that lost or changed that event is caught
// with one read.
type Checkpoint struct {
	Seq      uint64 `json:"seq"`
	Tree     Tree   `json:"tree"`
	LastLeaf Hash   `json:"last_leaf"`
}

// ErrCheckpoint is wrapped by the errors of ParseCheckpoint.
var ErrCheckpoint = errors.New("invalid checkpoint")

// ParseCheckpoint decodes the JSON form of a checkpoint (as json.Marshal
// writes it) and checks that it is self-consistent. It never echoes its
// input.
func ParseCheckpoint(b []byte) (Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: not a checkpoint object", ErrCheckpoint)
	}
	switch {
	case !c.Tree.valid():
		return Checkpoint{}, fmt.Errorf("%w: %d peaks for %d leaves", ErrCheckpoint, len(c.Tree.Peaks), c.Tree.Size)
	case c.Seq < c.Tree.Size:
		return Checkpoint{}, fmt.Errorf("%w: %d events by sequence %d", ErrCheckpoint, c.Tree.Size, c.Seq)
	case (c.Seq == 0) != (c.Tree.Size == 0):
		return Checkpoint{}, fmt.Errorf("%w: sequence %d with %d events", ErrCheckpoint, c.Seq, c.Tree.Size)
	}
	return c, nil
}

// Note returns the body of a C2SP tlog-checkpoint for the tree: the origin
// line, the tree size and the root hash in base64, each ending in a
// newline. Signed by a log key it becomes a signed tree head; the stream
// sequence is kept out of it on purpose (it is JetStream's, not the log's).
func (t Tree) Note(origin string) string {
	return origin + "\n" + strconv.FormatUint(t.Size, 10) + "\n" + t.Root().String() + "\n"
}

// Origin returns the C2SP checkpoint origin of the registry log of domain.
func Origin(domain string) string { return strings.ToLower(domain) + "/registry" }
