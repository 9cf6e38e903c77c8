package client

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// mappedFile is a file whose bytes a [filecrypt.Sealer] seals in place
// ([filecrypt.Viewer]): each range it asks for is mapped read-only,
// populated from the page cache in one system call, and unmapped when
// sealed. Sealing from the mapping saves copying the plaintext out of the
// page cache first (pread), about a third of the CPU of the encryption;
// mapping a range at a time keeps the resident set at the ranges being
// sealed, whatever the file's size. A range that cannot be mapped is
// read with ReadAt instead, and one that faults because the file shrank
// fails the share with filecrypt.ErrSourceChanged.
type mappedFile struct{ f *os.File }

// shareSource returns f as the source of a share's stream.
func shareSource(f *os.File) io.ReaderAt { return mappedFile{f} }

func (m mappedFile) ReadAt(p []byte, off int64) (int, error) { return m.f.ReadAt(p, off) }

func (m mappedFile) View(off int64, n int) ([]byte, func(), error) {
	pg := int64(os.Getpagesize())
	start := off &^ (pg - 1)
	conn, err := m.f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var b []byte
	var merr error
	if err := conn.Control(func(fd uintptr) {
		b, merr = unix.Mmap(int(fd), start, int(off-start)+n, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	}); err != nil {
		return nil, nil, err
	}
	if merr != nil {
		return nil, nil, merr
	}
	return b[off-start:], func() { _ = unix.Munmap(b) }, nil
}
