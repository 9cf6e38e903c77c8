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
