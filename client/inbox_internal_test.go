package client

import (
	"errors"
	"io"
	"testing"
)

// TestTransientCommit: a failed commit is never waited out, whatever
// transient error comes with it (a follower would retry for ever and
// hide the disk's failure).
func TestTransientCommit(t *testing.T) {
	if !transient(ErrUnreachable) {
		t.Fatal("ErrUnreachable is not transient")
	}
	if transient(errors.Join(ErrUnreachable, &commitError{io.ErrShortWrite})) {
		t.Error("a failed commit joined with ErrUnreachable is transient")
	}
}

// TestTakenSet: a follower knows the last n messages it took by their
// content, and forgets the oldest beyond n.
func TestTakenSet(t *testing.T) {
	ts := newTakenSet(2)
	a, b, c := ts.sum([]byte("a")), ts.sum([]byte("b")), ts.sum([]byte("c"))
	ts.add(a)
	ts.add(b)
	if !ts.has(a) || !ts.has(b) || ts.has(c) {
		t.Fatal("two taken: want a and b known, c not")
	}
	ts.add(c)
	if ts.has(a) || !ts.has(b) || !ts.has(c) {
		t.Fatal("a third taken of 2 remembered: want a forgotten, b and c known")
	}
}
