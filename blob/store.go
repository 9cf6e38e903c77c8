package blob

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// syncEvery is how many verified bytes a fetch writes between syncs of the
// partial file and its recorded length (in the background, see [Syncer]):
// what a crash can cost, not an interruption (an interrupted fetch records
// all it verified).
const syncEvery = 32 << 20

// writeBuf is the size of the writes of verified bytes to a partial file:
// one system call per MiB rather than per 16 KiB group.
const writeBuf = 1 << 20

// writeBuffers is how many writeBuf buffers a [WriteBehind] of a store
// has: one being filled, one being written, one spare.
const writeBuffers = 3

// Source provides Bao slices of blobs, such as a peer over the network.
type Source interface {
	// Slice returns a reader of the Bao slice encoding of [off, off+n) of
	// blob h (what [Store.WriteSlice] writes). Closing it must make a
	// blocked Read return.
	Slice(ctx context.Context, h Hash, off, n int64) (io.ReadCloser, error)
}

var _ Source = (*Store)(nil)

// Store is a directory of blobs, each with its outboard, plus the partial
// files of downloads in progress. A single fetch per blob runs at a time:
// in one process by the Store value's own record, across processes (on
// unix) by a lock on the partial file.
type Store struct {
	dir string

	mu       sync.Mutex
	fetching map[Hash]bool
}

// Open returns the store in dir, creating the directory (mode 0700) if
// needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return &Store{dir: dir, fetching: map[Hash]bool{}}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(h Hash) string { return filepath.Join(s.dir, h.String()) }

// Has reports whether the store holds blob h complete.
func (s *Store) Has(h Hash) bool {
	_, err := os.Stat(s.path(h))
	return err == nil
}

// Size returns the size of blob h, or [ErrNotFound].
func (s *Store) Size(h Hash) (int64, error) {
	st, err := os.Stat(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	} else if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Open opens blob h for reading, or returns [ErrNotFound].
func (s *Store) Open(h Hash) (*os.File, error) {
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	return f, err
}

// Remove deletes blob h, its outboard and any partial download of it.
func (s *Store) Remove(h Hash) error {
	var errs []error
	for _, suffix := range []string{"", ".obao", ".part", ".part.len", ".part.len.tmp", ".part.obao"} {
		if err := os.Remove(s.path(h) + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Import reads a blob of exactly size bytes from r into the store, computing
// its hash and outboard in the same pass, and returns the hash. It returns
// [ErrSize] if r ends early or holds more. The blob appears in the store
// only complete. r is read in order, a segment at a time, while the
// segments read before are hashed and written on the other cores.
func (s *Store) Import(r io.Reader, size int64) (Hash, error) {
	return s.build(size, true, func(p []byte, _ int64) error {
		if _, err := io.ReadFull(r, p); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: data ends before %d bytes", ErrSize, size)
		} else if err != nil {
			return err
		}
		return nil
	}, func() error {
		if n, _ := io.ReadFull(r, make([]byte, 1)); n > 0 {
			return fmt.Errorf("%w: data longer than %d bytes", ErrSize, size)
		}
		return nil
	})
}

// ImportAt reads a blob of size bytes from src into the store, as Import
// does, but a range at a time from several goroutines at once (ReadAt),
// so that a source that computes its bytes, such as a file being
// encrypted, uses every core. It returns [ErrSize] if src ends early.
// Errors of src are returned wrapped.
func (s *Store) ImportAt(src io.ReaderAt, size int64) (Hash, error) {
	return s.build(size, false, func(p []byte, off int64) error {
		n, err := src.ReadAt(p, off)
		if n == len(p) {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: data ends before %d bytes", ErrSize, size)
		}
		return err
	}, nil)
}

// build writes a blob of size bytes, filled a segment at a time by fill
// (see encodeParallel), and its outboard to temporary files, syncs them
// once each, checks done (if not nil) and installs them.
func (s *Store) build(size int64, sequential bool, fill func(p []byte, off int64) error, done func() error) (Hash, error) {
	if size < 0 {
		return Hash{}, fmt.Errorf("import: %w: %d bytes", ErrSize, size)
	}
	tmp, err := os.CreateTemp(s.dir, ".import-*")
	if err != nil {
		return Hash{}, fmt.Errorf("import: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	obPath := tmp.Name() + ".obao"
	defer os.Remove(obPath)
	ob, err := os.OpenFile(obPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Hash{}, fmt.Errorf("import: %w", err)
	}
	defer ob.Close()

	data := newDirectWriter(tmp)
	defer data.Close()
	root, err := encodeParallel(data, ob, size, sequential, fill)
	if err == nil && done != nil {
		err = done()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = ob.Sync()
	}
	if err == nil {
		err = ob.Close()
	}
	if err == nil {
		err = s.install(root, tmp.Name(), obPath)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("import: %w", err)
	}
	return root, nil
}

// install moves a synced blob and outboard into place: the outboard first,
// so that a blob never exists without it.
func (s *Store) install(h Hash, blobPath, obPath string) error {
	if err := os.Rename(obPath, s.path(h)+".obao"); err != nil {
		return err
	}
	if err := os.Rename(blobPath, s.path(h)); err != nil {
		return err
	}
	return SyncDir(s.dir)
}

// SyncDir flushes dir itself to disk, so that a file just renamed or
// linked into it survives a crash under its new name.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteSlice writes the Bao slice encoding of the bytes [off, off+n) of
// blob h to w: what a provider sends for a ranged request. It returns
// [ErrNotFound] or [ErrRange] before writing anything.
func (s *Store) WriteSlice(w io.Writer, h Hash, off, n int64) error {
	f, err := s.Open(h)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := checkRange(st.Size(), off, n); err != nil {
		return err
	}
	ob, err := os.Open(s.path(h) + ".obao")
	if err != nil {
		return fmt.Errorf("blob %s outboard: %w", h, err)
	}
	defer ob.Close()
	return extractSlice(w, f, ob, st.Size(), off, n)
}

// Slice implements [Source] from this store's blobs.
func (s *Store) Slice(ctx context.Context, h Hash, off, n int64) (io.ReadCloser, error) {
	size, err := s.Size(h)
	if err != nil {
		return nil, err
	}
	if err := checkRange(size, off, n); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.WriteSlice(pw, h, off, n)) }()
	return pr, nil
}

// Partial returns how many bytes of blob h a previous fetch verified and
// recorded: where the next fetch starts. It is 0 for no partial download.
func (s *Store) Partial(h Hash) int64 {
	n, _ := readLen(s.path(h) + ".part.len")
	return n
}

func readLen(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad partial length in %s", path)
	}
	return n, nil
}

// Fetch downloads blob h of size bytes from src into the store, unless the
// store holds it already. It asks src for the bytes after those a previous
// fetch verified, writes each 16 KiB group to the partial file only once it
// has verified against h, and makes the blob appear complete at the end.
// progress, if not nil, is called with the verified byte count as it grows.
//
// On error the verified prefix stays, recorded, for the next Fetch (from
// this or another source) to resume from. Errors wrap [ErrCorrupt] (src sent
// bytes that do not verify; they were not written), [ErrBusy], the ctx
// error, or the error of src.
func (s *Store) Fetch(ctx context.Context, h Hash, size int64, src Source, progress func(verified int64)) (err error) {
	if s.Has(h) {
		return nil
	}
	if size < 0 {
		return fmt.Errorf("fetch: %w: %d bytes", ErrSize, size)
	}
	s.mu.Lock()
	if s.fetching[h] {
		s.mu.Unlock()
		return fmt.Errorf("fetch %s: %w", h, ErrBusy)
	}
	s.fetching[h] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.fetching, h)
		s.mu.Unlock()
	}()

	partPath, lenPath := s.path(h)+".part", s.path(h)+".part.len"
	f, err := os.OpenFile(partPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer f.Close()
	// Another process on this directory (a second kez-chat) may fetch h
	// too: the lock on the partial file, held until the blob is
	// installed, keeps it from cutting the file back under this one.
	if ok, err := tryLock(f); err != nil {
		return fmt.Errorf("fetch: lock: %w", err)
	} else if !ok {
		return fmt.Errorf("fetch %s: %w", h, ErrBusy)
	}
	// The holder before us may have installed the blob, renaming the
	// file we opened, or removed it; or installed it before we opened
	// (created) this one.
	held, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	now, err := os.Stat(partPath)
	same := err == nil && os.SameFile(held, now)
	if s.Has(h) {
		if same {
			os.Remove(partPath) // ours, created after the install
		}
		return nil
	}
	if !same {
		return fmt.Errorf("fetch %s: %w", h, ErrBusy)
	}
	// Resume from the recorded length: it was synced before it was
	// recorded, so those bytes are on disk and verified. Anything past it
	// (written before a crash, not synced) is dropped. Nothing else
	// writes the file while the lock is held: held's size is its size.
	verified, _ := readLen(lenPath)
	if held.Size() < verified || verified > size {
		verified = 0 // the partial file is not what was recorded
	}
	if err := f.Truncate(verified); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if _, err := f.Seek(verified, io.SeekStart); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}

	obPath := partPath + ".obao"
	defer os.Remove(obPath)
	// A download from the first byte receives the whole tree: its nodes
	// make the outboard as they come (outboardTee). A resumed one
	// receives only part of it, and the outboard is computed from the
	// file once complete.
	var tee *outboardTee
	if verified == 0 && size > 0 {
		if tee, err = newOutboardTee(obPath, size); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		defer tee.close()
	}
	if verified < size {
		sy := NewSyncer(f, verified, syncEvery, func(n int64) error { return writeLen(lenPath, n) })
		sy.DropCache()
		// Direct writes where they can be (Appender): a fetched blob is
		// not read again soon. The Syncer's sync of f covers them.
		out := NewAppender(f, verified)
		defer out.Close()
		w := newPartWriter(out, sy, verified, progress)
		var teeW io.Writer
		if tee != nil {
			teeW = tee
		}
		err := get(ctx, src, h, size, verified, w, teeW)
		if ferr := w.close(); err == nil {
			err = ferr
		}
		if serr := sy.Close(); err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("fetch %s at byte %d: %w", h, sy.Synced(), err)
		}
	}

	// Complete. The outboard lets this store serve the blob in turn:
	// the verified tree itself, or, after a resume, computed from the
	// partial file, which re-checks the bytes earlier runs left on disk.
	if tee != nil {
		if err := tee.finish(); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
	} else {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		root, err := encodeOutboard(obPath, bufio.NewReaderSize(f, 256<<10), size)
		if err != nil {
			return fmt.Errorf("fetch: outboard: %w", err)
		}
		if root != h {
			// Verified bytes changed on disk: start over.
			os.Remove(lenPath)
			return fmt.Errorf("fetch %s: %w: partial file changed on disk", h, ErrCorrupt)
		}
	}
	// Installed while f, and so its lock, is open: another fetch that
	// takes the lock then finds the blob in place. The Syncer synced f.
	if err := s.install(h, partPath, obPath); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	os.Remove(lenPath)
	return nil
}

// partWriter appends verified bytes to a partial file through a
// WriteBehind, which tells the file's Syncer what it wrote.
type partWriter struct {
	wb       *WriteBehind
	n        int64 // verified bytes, in the file or buffered
	progress func(int64)
}

func newPartWriter(f io.Writer, sy *Syncer, verified int64, progress func(int64)) *partWriter {
	wrote := func(n int64) error { return sy.Wrote(verified + n) }
	return &partWriter{wb: NewWriteBehind(f, writeBuffers, writeBuf, wrote), n: verified, progress: progress}
}

func (w *partWriter) Write(p []byte) (int, error) {
	n, err := w.wb.Write(p)
	w.n += int64(n)
	if w.progress != nil {
		w.progress(w.n)
	}
	return n, err
}

// close writes what is buffered and waits for every write.
func (w *partWriter) close() error { return w.wb.Close() }

// writeLen records n in the file at path, by rename, so that a crash
// leaves the old record or the new one.
func writeLen(path string, n int64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(n, 10)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
