package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular is returned by [Read] for a directory, device, pipe or
// socket.
var ErrNotRegular = errors.New("not a regular file")

// ModeError is returned by [Read] for a file that group or others may
// read, write or execute.
type ModeError struct {
	Name string
	Mode fs.FileMode // the permission bits
}

func (e *ModeError) Error() string { return fmt.Sprintf("%s has mode %04o", e.Name, e.Mode) }

// Read returns the first max bytes of the file name, which must be a
// regular file with no permission for group or others ([ErrNotRegular],
// [*ModeError]); other errors are those of opening (such as
// [fs.ErrNotExist]), stat and reading. The mode is checked on the open
// file, so it is the file read; on Unix the file is opened non-blocking,
// so a FIFO put in place of a key file is refused rather than waited on.
// Errors never show the content; the caller clears the result once used.
func Read(name string, max int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", name, ErrNotRegular)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &ModeError{name, perm}
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		clear(b)
		return nil, err
	}
	return b, nil
}
