package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/share"
)

// A file is received by decrypting each verified chunk of its blob straight
// into a partial plaintext file beside the output, which is moved into
// place when complete: the file is written once, and the encrypted blob
// never touches the disk. Every byte from the network is verified against
// the blob's hash (Bao, 16 KiB groups) before it reaches the decryption,
// and a chunk's plaintext is written only once the whole chunk has
// verified and authenticated, so no unverified plaintext is ever written.
//
// A download in progress is recorded in the profile's downloads/<hash>:
// where the partial file is, how much of it is synced (a whole number of
// chunks), and the stream's salt. The record is written only after the
// partial file was synced, so it never claims plaintext that is not on
// disk; bytes past it are dropped when the download resumes, and the
// download resumes at the chunk that follows.

// downloadsDir is the profile directory of the records of downloads in
// progress.
const downloadsDir = "downloads"

// Receiving tunables.
const (
	// batchChunks is how many encrypted chunks go from verification to
	// decryption at once: the plaintext of a batch is one write.
	batchChunks = 16
	// batches is how many batches are in flight between the two.
	batches = 3
	// receiveSyncEvery is how many plaintext bytes are written between
	// two records of a download in progress (synced in the background):
	// what a crash may cost.
	receiveSyncEvery = 32 << 20
)

// fetchState is the record of a download in progress.
type fetchState struct {
	V int `json:"v"`
	// Part is the absolute path of the partial plaintext file.
	Part string `json:"part"`
	// Done is how many plaintext bytes of Part are synced: chunks 0 to
	// Done/ChunkSize-1, or the whole file.
	Done int64 `json:"done"`
	// Salt is the stream's salt (from its header), once known.
	Salt []byte `json:"salt,omitempty"`
}

// getFunc fetches (the rest of) a blob from src; progress, if not nil,
// gets the verified length as it grows.
type getFunc func(ctx context.Context, src blob.Source, progress func(int64)) error

// receiveFile downloads the file whose blob is h (size bytes, encrypted
// under key) to path, which must not exist (it is never overwritten):
// it resumes a download recorded in dir, calls run with the function that
// fetches the rest of the blob from a source (run may call it again after
// an interruption; it resumes), and moves the file into place once every
// chunk is written. It returns the blob offset it resumed from. notice,
// if not nil, is told why a recorded download is not resumed.
//
// A blob that verifies but does not decrypt (the error wraps
// [filecrypt.ErrDecrypt] or [filecrypt.ErrHeader]) can never succeed: its
// partial file and record are removed.
func receiveFile(dir string, h blob.Hash, size int64, key filecrypt.Key, path string, notice func(string), run func(get getFunc) error) (int64, error) {
	in, err := newIncoming(dir, h, size, key, path, notice)
	if err != nil {
		return 0, err
	}
	defer in.release()
	resumed := in.offset()
	if resumed < size {
		if err := run(in.get); err != nil {
			if errors.Is(err, filecrypt.ErrDecrypt) || errors.Is(err, filecrypt.ErrHeader) {
				in.discard()
			}
			return resumed, err
		}
	}
	return resumed, in.finish()
}

// errFetchState: a download record that cannot be used.
var errFetchState = errors.New("bad download record")

// errForeignPart: the partial file a record names is not the user's, or
// others may write it. Whoever made it or can write it chose its bytes,
// which resuming would keep as the start of the file, and its owner would
// read the rest as it is decrypted. It is not resumed, and removed only
// if it is the user's (see fresh).
var errForeignPart = errors.New("partial file is not yours alone")

// ownPrivate returns an error wrapping errForeignPart unless the file fi
// describes belongs to the effective user and no one else may write it.
// Others reading it is left alone: the finished file keeps the partial
// file's mode, and file systems such as exFAT or vfat give every file
// the same mode, readable by all (which would otherwise make every
// interrupted download there start over).
func ownPrivate(fi fs.FileInfo) error {
	if !owned(fi) {
		return fmt.Errorf("%w: not owned by you", errForeignPart)
	}
	if p := fi.Mode().Perm(); p&0o022 != 0 {
		return fmt.Errorf("%w: mode %04o lets others write it", errForeignPart, p)
	}
	return nil
}

// parseFetchState reads a download record of a file of plain bytes. It
// returns an error wrapping errFetchState for anything but a record this
// version writes, with a Done that the file allows.
func parseFetchState(b []byte, plain int64) (fetchState, error) {
	var st fetchState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return fetchState{}, fmt.Errorf("%w: %v", errFetchState, err)
	}
	if dec.More() {
		return fetchState{}, fmt.Errorf("%w: data after the record", errFetchState)
	}
	switch {
	case st.V != 1:
		return fetchState{}, fmt.Errorf("%w: version %d", errFetchState, st.V)
	case !filepath.IsAbs(st.Part) || filepath.Clean(st.Part) != st.Part:
		return fetchState{}, fmt.Errorf("%w: partial file path", errFetchState)
	case st.Done < 0 || st.Done > plain || (st.Done%filecrypt.ChunkSize != 0 && st.Done != plain):
		return fetchState{}, fmt.Errorf("%w: %d bytes done of %d", errFetchState, st.Done, plain)
	case st.Salt != nil && len(st.Salt) != filecrypt.SaltSize:
		return fetchState{}, fmt.Errorf("%w: salt", errFetchState)
	case st.Done > 0 && st.Salt == nil:
		return fetchState{}, fmt.Errorf("%w: no salt", errFetchState)
	}
	return st, nil
}

// incoming is the download of one file: blob h of size bytes, encrypted under key,
// to path.
type incoming struct {
	h      blob.Hash
	size   int64 // of the blob
	plain  int64 // of the file
	key    filecrypt.Key
	path   string
	record string // the download record's path
	unlock func() // releases the lock of the download

	st    fetchState
	part  *os.File
	ch    *filecrypt.Chunks // once the header is known
	start uint64            // first chunk this attempt fetches
}

// newIncoming prepares the download of blob h of size bytes under key to
// path: it resumes the partial file its record names, when that is in
// path's directory, intact and the user's alone, else starts a new one
// (removing the old one if it is the user's) and tells notice why.
//
// It holds the download's lock, beside its record, until release: two
// fetches of a file at once would share the partial file, the second
// cutting it back to the recorded length under the first, which would
// go on writing at its own offsets and leave zeros no one sent. A second
// one fails at once with [ErrFetchRunning].
func newIncoming(dir string, h blob.Hash, size int64, key filecrypt.Key, path string, notice func(string)) (*incoming, error) {
	plain, err := filecrypt.PlaintextSize(size)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &incoming{h: h, size: size, plain: plain, key: key, path: abs, record: filepath.Join(dir, h.String())}
	if r.unlock, err = lockDownload(r.record + ".lock"); err != nil {
		if errors.Is(err, ErrFetchRunning) {
			err = withHint(fmt.Errorf("%s: %w", filepath.Base(abs), err),
				"wait for it to finish, or stop it: the download resumes where it stopped")
		}
		return nil, err
	}
	if err := r.resume(); err != nil {
		r.close()
		// No record at all is the usual case, not news.
		if notice != nil && (r.st.Part != "" || !errors.Is(err, os.ErrNotExist)) {
			notice(fmt.Sprintf("not resuming the earlier download of %s (%v); starting over", filepath.Base(r.path), err))
		}
		if err := r.fresh(); err != nil {
			r.release()
			return nil, err
		}
	}
	return r, nil
}

// resume opens the partial file of the record, if it can be resumed.
func (r *incoming) resume() error {
	b, err := os.ReadFile(r.record)
	if err != nil {
		return err
	}
	st, err := parseFetchState(b, r.plain)
	if err != nil {
		return err
	}
	r.st = st
	if filepath.Dir(st.Part) != filepath.Dir(r.path) {
		return errors.New("partial file in another directory")
	}
	// The name is ours, but the directory may be shared (/tmp), and the
	// file may be gone (a reboot) while the record stayed: someone who
	// reads the name in the record's place, or in a listing, could have
	// made one. So: no symlink, a regular file with no other link,
	// owned by the user and writable by no one else (else its first
	// bytes could be theirs, and the rest readable by them), as large as
	// the record says. The checks are made on the file opened.
	f, err := openNoFollow(st.Part)
	if err != nil {
		return fmt.Errorf("partial file: %w", err)
	}
	r.part = f
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || links(fi) != 1 {
		return fmt.Errorf("%w: not a regular file of one link", errForeignPart)
	}
	if err := ownPrivate(fi); err != nil {
		return err
	}
	if fi.Size() < st.Done {
		return errors.New("partial file shorter than recorded")
	}
	if st.Salt != nil {
		hdr := append([]byte(filecrypt.Magic), st.Salt...)
		if r.ch, err = filecrypt.NewChunks(r.key, hdr, r.size); err != nil {
			return err
		}
		r.start = uint64(st.Done / filecrypt.ChunkSize)
		if st.Done == r.plain {
			r.start = r.ch.Count()
		}
	}
	// Bytes past the record were written before a crash, not synced.
	if err := f.Truncate(st.Done); err != nil {
		return err
	}
	_, err = f.Seek(st.Done, io.SeekStart)
	return err
}

// fresh removes what an unusable record names, if it is the user's, and
// starts a new partial file, recorded at once so that a crash leaves no
// file unaccounted for. A file someone else made is left alone: it is
// theirs to remove.
func (r *incoming) fresh() error {
	if r.st.Part != "" {
		if fi, err := os.Lstat(r.st.Part); err == nil && owned(fi) {
			os.Remove(r.st.Part)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	// Mode 0600: the file was sent to this user alone, and a partial
	// plaintext must not be readable by others. O_EXCL: never an existing
	// file (or a link an attacker planted).
	name := filepath.Join(filepath.Dir(r.path), partName(filepath.Base(r.path), rnd))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	r.part, r.ch, r.start = f, nil, 0
	r.st = fetchState{V: 1, Part: name}
	return r.save(0)
}

// partName returns the name of a partial file of the output file name,
// with the random rnd: ".<name>.kez-<rnd>.part", with name cut short (at
// a character boundary) so that the whole is at most share.MaxNameLen bytes:
// an output name of share.MaxNameLen bytes must have a partial file too.
func partName(name string, rnd [8]byte) string {
	suffix := fmt.Sprintf(".kez-%x.part", rnd)
	return "." + share.CutName(name, share.MaxNameLen-1-len(suffix)) + suffix
}

// save records that n plaintext bytes of the partial file are synced.
func (r *incoming) save(n int64) error {
	st := r.st
	st.Done = n
	return writeJSON(r.record, st)
}

func (r *incoming) close() {
	if r.part != nil {
		r.part.Close()
		r.part = nil
	}
}

// release closes the partial file and releases the download's lock.
func (r *incoming) release() {
	r.close()
	if r.unlock != nil {
		r.unlock()
		r.unlock = nil
	}
}

// discard removes the partial file and its record: the blob does not
// decrypt, so nothing of it can ever be kept.
func (r *incoming) discard() {
	r.close()
	os.Remove(r.st.Part)
	os.Remove(r.record)
}

// written returns how many plaintext bytes the partial file holds.
func (r *incoming) written() int64 {
	return min(int64(r.start)*filecrypt.ChunkSize, r.plain)
}

// offset returns the blob offset the next attempt starts from.
func (r *incoming) offset() int64 {
	if r.ch == nil {
		return 0
	}
	return r.ch.Offset(r.start)
}

// get fetches the rest of the blob from src, decrypting each verified
// chunk into the partial file. progress gets the verified blob bytes.
func (r *incoming) get(ctx context.Context, src blob.Source, progress func(int64)) error {
	off := r.offset()
	if off == r.size {
		return nil
	}
	sy := blob.NewSyncer(r.part, r.written(), receiveSyncEvery, r.save)
	sy.DropCache() // a download need not fill the page cache
	// Each attempt writes from the end of what the file holds. Direct
	// writes where they can be: the plaintext is not read again soon, and
	// copying it into the page cache cost more system CPU than decrypting
	// it. The Syncer's sync of r.part covers them.
	out := blob.NewAppender(r.part, r.written())
	defer out.Close()
	d := newDecrypter(r, sy, out)
	sink := &chunkSink{r: r, d: d, off: off, progress: progress}
	err := blob.Get(ctx, src, r.h, r.size, off, sink)
	if ferr := sink.finish(); err == nil {
		err = ferr
	}
	if derr := d.wait(); derr != nil {
		err = derr // a chunk that does not open explains what follows
	}
	if serr := sy.Close(); err == nil {
		err = serr
	}
	if err == nil && (r.ch == nil || r.start != r.ch.Count()) {
		err = fmt.Errorf("blob %s: %w: stream ended at chunk %d", r.h, blob.ErrCorrupt, r.start)
	}
	return err
}

// linkFile is os.Link, the first way finish tries; a variable so that
// tests can make it fail as it does on a file system without hard links.
var linkFile = os.Link

// finish moves the complete file into place (never over an existing one)
// and removes the record.
func (r *incoming) finish() error {
	if err := r.part.Sync(); err != nil {
		return err
	}
	r.close()
	if err := r.place(); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", r.path, ErrFileExists)
		}
		return err
	}
	// The file's new name is made durable before the record goes: on
	// another disk (a USB drive) the record's removal could otherwise
	// outlive a rename lost with the drive, leaving the whole file in a
	// partial nothing records.
	if err := blob.SyncDir(filepath.Dir(r.path)); err != nil {
		return err
	}
	os.Remove(r.record)
	return nil
}

// place gives the partial file the output's name, or fails with an error
// wrapping os.ErrExist if that name is taken: a file the user has is never
// replaced. A hard link does it in one step, where a rename would replace
// the file. FAT, exFAT and vfat (USB drives, SD cards) have no hard links:
// there the name is first taken by an empty file created exclusively,
// which the partial file is then renamed over. A crash between the two
// leaves that empty file under the output's name, and the partial file
// and its record: the next fetch says the file exists, and once it is
// removed, finishes from the partial file.
func (r *incoming) place() error {
	err := linkFile(r.st.Part, r.path)
	if err == nil {
		os.Remove(r.st.Part)
		return nil
	}
	// Any other error (a read-only file system, no right to write the
	// directory) is the user's to see; the exclusive create below would
	// fail with the same.
	if errors.Is(err, os.ErrExist) || !noHardLinks(err) {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Rename(r.st.Part, r.path); err != nil {
		os.Remove(r.path) // the placeholder is ours: it was created above
		return err
	}
	return nil
}

// noHardLinks reports whether err, from a hard link, means the file system
// makes none: ENOSYS, ENOTSUP or EOPNOTSUPP (macOS's msdos and exfat, some
// FUSE and network file systems), Windows' ERROR_NOT_SUPPORTED, or what
// linkUnsupported knows of the system.
func noHardLinks(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || linkUnsupported(err)
}

// chunkSink takes the verified bytes of the blob from off on, reads the
// header, and hands whole encrypted chunks to the decrypter, a batch at
// a time.
type chunkSink struct {
	r        *incoming
	d        *decrypter
	off      int64 // blob offset of the next byte
	hdr      []byte
	batch    *chunkBatch
	progress func(int64)
}

// chunkBatch is a run of whole encrypted chunks from chunk first on.
type chunkBatch struct {
	first uint64
	buf   []byte
}

func (s *chunkSink) Write(p []byte) (int, error) {
	n := len(p)
	if s.r.ch == nil { // the header comes first
		c := min(filecrypt.HeaderSize-len(s.hdr), len(p))
		s.hdr = append(s.hdr, p[:c]...)
		p = p[c:]
		s.off += int64(c)
		if len(s.hdr) < filecrypt.HeaderSize {
			return n, nil
		}
		ch, err := filecrypt.NewChunks(s.r.key, s.hdr, s.r.size)
		if err != nil {
			return 0, fmt.Errorf("blob %s: %w", s.r.h, err)
		}
		s.r.ch, s.r.st.Salt = ch, s.hdr[len(filecrypt.Magic):]
	}
	for len(p) > 0 {
		if s.batch == nil {
			b, err := s.d.free()
			if err != nil {
				return 0, err
			}
			b.first, b.buf = s.r.ch.Index(s.off), b.buf[:0]
			s.batch = b
		}
		room := int(min(int64(cap(s.batch.buf)), s.r.size-s.r.ch.Offset(s.batch.first))) - len(s.batch.buf)
		c := min(room, len(p))
		s.batch.buf = append(s.batch.buf, p[:c]...)
		p = p[c:]
		s.off += int64(c)
		if c == room {
			s.d.send(s.batch)
			s.batch = nil
		}
	}
	if s.progress != nil {
		s.progress(s.off)
	}
	return n, nil
}

// finish hands the whole chunks of an unfinished batch to the decrypter
// (the bytes of a chunk cut short are dropped, to be fetched again) and
// waits for it.
func (s *chunkSink) finish() error {
	if b := s.batch; b != nil {
		s.batch = nil
		b.buf = b.buf[:len(b.buf)/filecrypt.EncChunkSize*filecrypt.EncChunkSize]
		if len(b.buf) > 0 {
			s.d.send(b)
		}
	}
	s.d.close()
	return nil
}

// decrypter opens the batches of chunks in order, on its own goroutine,
// into plaintext buffers that a [blob.WriteBehind] appends to the partial
// file, one write per batch, on a third goroutine: verification,
// decryption and the copy into the page cache overlap. Only batches = 3
// batches exist, so sending one never blocks.
type decrypter struct {
	r      *incoming
	sy     *blob.Syncer
	wb     *blob.WriteBehind
	from   int64 // plaintext bytes in the partial file before this attempt
	full   chan *chunkBatch
	empty  chan *chunkBatch
	failed chan struct{} // closed at the first error, err set
	done   chan struct{}
	err    error
}

func newDecrypter(r *incoming, sy *blob.Syncer, out io.Writer) *decrypter {
	d := &decrypter{r: r, sy: sy, from: r.written(), full: make(chan *chunkBatch, batches), empty: make(chan *chunkBatch, batches),
		failed: make(chan struct{}), done: make(chan struct{})}
	d.wb = blob.NewWriteBehind(out, batches, batchChunks*filecrypt.ChunkSize, d.wrote)
	for range batches {
		d.empty <- &chunkBatch{buf: make([]byte, 0, batchChunks*filecrypt.EncChunkSize)}
	}
	go d.run()
	return d
}

// free returns an empty batch, or the error that stopped the decrypter.
func (d *decrypter) free() (*chunkBatch, error) {
	select {
	case <-d.failed:
		return nil, d.err
	default:
	}
	select {
	case b := <-d.empty:
		return b, nil
	case <-d.failed:
		return nil, d.err
	}
}

func (d *decrypter) send(b *chunkBatch) { d.full <- b }
func (d *decrypter) close()             { close(d.full) }

// wait waits for the decrypter to finish the batches sent, and for their
// plaintext to be written, and returns its error.
func (d *decrypter) wait() error {
	<-d.done
	return d.err
}

// run opens the batches sent.
func (d *decrypter) run() {
	defer close(d.done)
	for b := range d.full {
		if d.err == nil {
			if err := d.batch(b); err != nil {
				d.err = err
				close(d.failed)
			}
		}
		d.empty <- b
	}
	if err := d.wb.Close(); err != nil && d.err == nil {
		d.err = err
		close(d.failed)
	}
}

// batch opens the chunks of b into a plaintext buffer and hands it to the
// writer.
func (d *decrypter) batch(b *chunkBatch) error {
	plain, err := d.wb.Buffer()
	if err != nil {
		return err
	}
	i, ct := b.first, b.buf
	for len(ct) > 0 {
		n := d.r.ch.Len(i)
		if plain, err = d.r.ch.Open(plain, ct[:n], i); err != nil {
			// Not one byte of a batch with a chunk that does not
			// open: the chunks before it are genuine, but the stream
			// is not what its sender announced. (The decrypter stops
			// here, so the buffer need not go back.)
			return err
		}
		ct = ct[n:]
		i++
	}
	d.wb.Submit(plain)
	return nil
}

// wrote is told by the writer that this attempt wrote n plaintext bytes
// (whole chunks, or up to the end of the file): the partial file's chunk
// count and its Syncer advance.
func (d *decrypter) wrote(n int64) error {
	w := d.from + n
	if w == d.r.plain {
		d.r.start = d.r.ch.Count()
	} else {
		d.r.start = uint64(w / filecrypt.ChunkSize)
	}
	return d.sy.Wrote(w)
}
