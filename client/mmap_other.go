//go:build !linux

package client

import (
	"io"
	"os"
)

// shareSource returns f as the source of a share's stream: read with
// ReadAt (the mapped source is Linux's, see mmap_linux.go).
func shareSource(f *os.File) io.ReaderAt { return f }
