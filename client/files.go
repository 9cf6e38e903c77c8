package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/p2p"
	"kez.lat/kez/share"
	"kez.lat/kez/sigchain"
)

// Profile files of the file layer.
const (
	sharesFile = "shares.json" // what the user shares, and the manifest
	blobsDir   = "blobs"       // the blob store
)

// SharedFile is a file the user shares, as shares.json keeps it: its
// description, its content key, and who it is shared with.
type SharedFile struct {
	File share.File  `json:"file"`
	Key  []byte      `json:"key"` // the content key; the profile is private (0700)
	With []Recipient `json:"with"`
}

// Recipient is a user a file is shared with.
type Recipient struct {
	Handle kez.Handle    `json:"handle"`
	Key    kez.PublicKey `json:"key"`
	At     int64         `json:"at"`
}

// ID returns the short form of the file's blob hash that commands take.
func (f SharedFile) ID() string { return f.File.Blob.String()[:idLen] }

// Shared is what is shown of a shared file: all but its content key.
type Shared struct {
	ID   string      `json:"id"`
	File share.File  `json:"file"`
	With []Recipient `json:"with"`
}

// Info returns what is shown of f.
func (f SharedFile) Info() Shared { return Shared{ID: f.ID(), File: f.File, With: f.With} }

// idLen is the length of a file ID as shown: the first 12 hex digits of
// the blob hash. Commands accept any prefix of 8 digits or more.
const idLen = 12

// minIDLen is the shortest ID prefix commands accept.
const minIDLen = 8

// shares is the content of shares.json.
type shares struct {
	// Seq is the sequence number of the last manifest built.
	Seq uint64 `json:"seq"`
	// Manifest is the hash of the current manifest blob (zero if none).
	Manifest *blob.Hash   `json:"manifest,omitempty"`
	Files    []SharedFile `json:"files"`
}

// blobs returns the profile's blob store.
func (c *Client) blobs() (*blob.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store == nil {
		s, err := blob.Open(c.p.path(blobsDir))
		if err != nil {
			return nil, err
		}
		c.store = s
	}
	return c.store, nil
}

func (p *Profile) shares() (shares, error) {
	var s shares
	if err := readJSON(p.path(sharesFile), &s); err != nil && !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	for i, f := range s.Files {
		if err := f.File.Validate(); err != nil {
			return shares{}, fmt.Errorf("%s: file %d: %w", p.path(sharesFile), i, err)
		}
	}
	return s, nil
}

// Files returns the files the user shares, oldest first.
func (c *Client) Files() ([]Shared, error) {
	if _, _, err := c.account(); err != nil {
		return nil, err
	}
	s, err := c.p.shares()
	out := make([]Shared, len(s.Files))
	for i, f := range s.Files {
		out[i] = f.Info()
	}
	return out, err
}

// ShareResult is what [Client.Share] did.
type ShareResult struct {
	Shared
	// Message is the announcement sent to the recipient.
	Message Entry `json:"message"`
}

// ErrNotFile: the path to share is not a regular file.
var ErrNotFile = errors.New("not a regular file")

// Share shares the file at path with contact h: it encrypts the file
// under a new content key into the blob store (one pass, 4 MiB segments
// on every core, a few segments of memory), records it, publishes a new shared-files manifest (its hash in
// the sigchain), and announces the file to h in a file_share message with
// the content key wrapped for h. progress, if not nil, is called with
// the bytes of the file encrypted so far, from one goroutine at a time. A file
// that changes size while it is read is an error wrapping
// [filecrypt.ErrSourceChanged]. h is looked up while the file is
// encrypted; if that fails, the share stops, keeps no blob and returns
// the look-up's error. The file is served while a `listen` runs
// ([Client.Serve]).
func (c *Client) Share(ctx context.Context, h kez.Handle, path string, progress func(done int64)) (ShareResult, error) {
	a, key, err := c.account()
	if err != nil {
		return ShareResult{}, err
	}
	// The contact is looked up (and refreshed: a round trip or two and
	// a sigchain check) while the file is encrypted. Its error comes
	// first, as if it had been looked up first; it stops the encryption
	// and drops the blob.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type contactResult struct {
		ct  Contact
		err error
	}
	ctc := make(chan contactResult, 1)
	go func() {
		ct, err := c.sendContact(cctx, a, h, SendOptions{})
		if err != nil {
			cancel()
		}
		ctc <- contactResult{ct, err}
	}()
	fi, k, hash, store, err := c.encryptFile(cctx, path, progress)
	cr := <-ctc
	if cr.err != nil {
		if err == nil {
			_ = store.Remove(hash)
		}
		return ShareResult{}, cr.err
	}
	if err != nil {
		return ShareResult{}, err
	}
	ct := cr.ct
	name := share.SanitizeName(filepath.Base(path))
	sf := SharedFile{File: share.File{Blob: hash, Size: filecrypt.EncryptedSize(fi.Size()), Name: name, FileSize: fi.Size(),
		MIME: mime.TypeByExtension(filepath.Ext(name)), SharedAt: c.cfg.Now().Unix()}, Key: k.Bytes(),
		With: []Recipient{{Handle: ct.Handle, Key: ct.Key, At: c.cfg.Now().Unix()}}}
	if len(sf.File.MIME) > share.MaxMIMELen {
		sf.File.MIME = ""
	}
	if err := c.updateShares(ctx, func(s *shares) error {
		s.Files = append(s.Files, sf)
		return nil
	}); err != nil {
		return ShareResult{}, err
	}
	// Where the own node was last seen listening, from the own chain; the
	// recipient also reads the chain when fetching. Relay-only, those are
	// the relay circuits, in the announcement and in the chain.
	if c.cfg.RelayOnly {
		c.hideAddrs(ctx)
	}
	var addrs []string
	if a, err = c.p.Account(); err == nil {
		if ep := p2pEndpoint(a.Chain, PeerID(a.Primary)); ep != nil {
			listed := ep.Addrs
			if c.cfg.RelayOnly {
				listed = p2p.CircuitAddrs(listed) // should hideAddrs have failed
			}
			for _, ad := range listed {
				if share.CheckAddr(ad) == nil && len(addrs) < share.MaxAddrs {
					addrs = append(addrs, ad) // a hint: one it refuses is left out
				}
			}
		}
	}
	ann, err := share.NewAnnouncement(key, ct.Key, sf.File, k, addrs, c.cfg.Rand)
	if err != nil {
		return ShareResult{}, err
	}
	pt, err := ann.Plaintext()
	if err != nil {
		return ShareResult{}, err
	}
	e, err := c.Send(ctx, ct.Handle, pt, SendOptions{NoRefresh: true})
	if errors.Is(err, ErrSentNotRecorded) {
		return ShareResult{Shared: sf.Info(), Message: e}, fmt.Errorf("%s is shared with @%s: %w", name, ct.Handle, err)
	}
	if err != nil {
		return ShareResult{Shared: sf.Info()}, withHint(fmt.Errorf("%s is shared with @%s, but the announcement was not sent: %w", name, ct.Handle, err),
			"@"+ct.Handle.String()+" can still see it with `kez-chat browse`; or unshare it and share again")
	}
	return ShareResult{Shared: sf.Info(), Message: e}, nil
}

// encryptFile encrypts the regular file at path under a new key into
// the blob store (see encryptInto).
func (c *Client) encryptFile(ctx context.Context, path string, progress func(int64)) (os.FileInfo, filecrypt.Key, blob.Hash, *blob.Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, fmt.Errorf("%s: %w", path, ErrNotFile)
	}
	store, err := c.blobs()
	if err != nil {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, err
	}
	k, err := filecrypt.NewKey(c.cfg.Rand)
	if err != nil {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, err
	}
	hash, err := encryptInto(ctx, store, f, fi.Size(), k, c.cfg.Rand, progress)
	if err != nil {
		return nil, filecrypt.Key{}, blob.Hash{}, nil, fmt.Errorf("encrypt %s: %w", path, err)
	}
	return fi, k, hash, store, nil
}

// encryptInto encrypts the file f of size bytes under k (kez-file-v1)
// straight into the store and returns the blob's hash. The file is read,
// encrypted, hashed and written in one pass, a segment of the stream at a
// time on every core (see [blob.Store.ImportAt]). progress, if not nil,
// is called with the bytes of the stream done so far, from one goroutine
// at a time. It stops when ctx ends.
func encryptInto(ctx context.Context, store *blob.Store, f *os.File, size int64, k filecrypt.Key, random io.Reader, progress func(int64)) (blob.Hash, error) {
	before, err := f.Stat()
	if err != nil {
		return blob.Hash{}, err
	}
	s, err := filecrypt.NewSealer(shareSource(f), size, k, random)
	if err != nil {
		return blob.Hash{}, err
	}
	h, err := store.ImportAt(&progressReaderAt{r: s, ctx: ctx, fn: progress, total: size, size: s.Size()}, s.Size())
	if err != nil {
		return blob.Hash{}, err
	}
	// Segments are sealed in parallel, and the chunk across each
	// segment's edge twice: a file written to in place, at the same size,
	// while it was read could leave a chunk whose halves come from two
	// versions, which no recipient could open. (The Sealer catches a
	// change of size.)
	if after, err := f.Stat(); err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		_ = store.Remove(h)
		return blob.Hash{}, fmt.Errorf("%w: %s was written to while it was shared; share it again", filecrypt.ErrSourceChanged, f.Name())
	}
	return h, nil
}

// progressReaderAt reports the bytes read so far (scaled to the file's
// size) and stops when ctx ends.
type progressReaderAt struct {
	r           io.ReaderAt
	ctx         context.Context
	fn          func(int64)
	total, size int64 // of the file, of the stream

	mu sync.Mutex
	n  int64
}

func (p *progressReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.ReadAt(b, off)
	if p.fn != nil && n > 0 {
		p.mu.Lock()
		p.n += int64(n)
		// In floating point: n × total passes int64 from about 3 GB.
		p.fn(min(p.total, int64(float64(p.n)*float64(p.total)/float64(max(1, p.size)))))
		p.mu.Unlock()
	}
	return n, err
}

// ErrNoSuchFile: no shared or announced file has this ID.
var ErrNoSuchFile = errors.New("no such file")

// Unshare stops sharing the file whose ID starts with id: with one user
// (h not zero) or with everyone. A file shared with no one any more is
// deleted from the blob store. The new manifest is published.
func (c *Client) Unshare(ctx context.Context, id string, h kez.Handle) (Shared, error) {
	if _, _, err := c.account(); err != nil {
		return Shared{}, err
	}
	var out Shared
	var gone *blob.Hash
	err := c.updateShares(ctx, func(s *shares) error {
		i, err := findShared(s.Files, id)
		if err != nil {
			return err
		}
		f := &s.Files[i]
		out = f.Info()
		if !h.IsZero() {
			n := len(f.With)
			f.With = slices.DeleteFunc(f.With, func(r Recipient) bool { return r.Handle == h })
			if len(f.With) == n {
				return withHint(fmt.Errorf("%s is not shared with @%s", f.File.Name, h), "kez-chat files lists who has each file")
			}
		}
		if h.IsZero() || len(f.With) == 0 {
			b := f.File.Blob // f points into the slice Delete shifts
			gone = &b
			s.Files = slices.Delete(s.Files, i, i+1)
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	if gone != nil {
		store, err := c.blobs()
		if err != nil {
			return out, err
		}
		return out, store.Remove(*gone)
	}
	return out, nil
}

// findShared returns the index of the file whose blob hash starts with id.
func findShared(fs []SharedFile, id string) (int, error) {
	id, err := checkID(id)
	if err != nil {
		return 0, err
	}
	found := -1
	for i, f := range fs {
		if strings.HasPrefix(f.File.Blob.String(), id) {
			if found >= 0 {
				return 0, withHint(fmt.Errorf("file ID %s is ambiguous", id), "give more digits")
			}
			found = i
		}
	}
	if found < 0 {
		return 0, withHint(fmt.Errorf("%w: %s", ErrNoSuchFile, id), "kez-chat files lists what you share")
	}
	return found, nil
}

// checkID normalises a file ID as typed.
func checkID(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if len(id) < minIDLen || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", withHint(fmt.Errorf("%w: %q is not a file ID", ErrNoSuchFile, id),
			fmt.Sprintf("a file ID is %d or more hex digits of the file's hash, as `kez-chat files` and announcements show", minIDLen))
	}
	return id, nil
}

// updateShares changes shares.json under the profile lock and, when the
// files or their recipients changed, builds and stores a new manifest
// and names it in the sigchain (set_shared_files).
func (c *Client) updateShares(ctx context.Context, fn func(*shares) error) error {
	a, key, err := c.account()
	if err != nil {
		return err
	}
	store, err := c.blobs()
	if err != nil {
		return err
	}
	unlock, err := c.p.lock(false)
	if err != nil {
		return err
	}
	s, err := c.p.shares()
	if err != nil {
		unlock()
		return err
	}
	old := s.Manifest
	if err := fn(&s); err != nil {
		unlock()
		return err
	}
	raw, err := c.buildManifest(key, &s)
	if err != nil {
		unlock()
		return err
	}
	mh, err := store.Import(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		unlock()
		return err
	}
	s.Manifest = &mh
	err = writeJSON(c.p.path(sharesFile), s)
	unlock()
	if err != nil {
		return err
	}
	if old != nil && *old != mh {
		_ = store.Remove(*old)
	}
	ptr := share.Pointer(raw)
	_, err = c.extendChain(ctx, func(_ Account, st sigchain.State) []chainEvent {
		if st.SharedFiles != nil && *st.SharedFiles == ptr {
			return nil
		}
		return []chainEvent{{sigchain.TypeSetSharedFiles, ptr}}
	})
	if err != nil {
		return withHint(fmt.Errorf("publish the shared-files manifest of %s: %w", a.Handle, err),
			"the change is saved; the next share or unshare publishes it")
	}
	return nil
}

// buildManifest makes the manifest of s: one entry per file and
// recipient, under the next sequence number.
func (c *Client) buildManifest(key *kez.PrivateKey, s *shares) ([]byte, error) {
	var entries []share.Entry
	for _, f := range s.Files {
		k, err := filecrypt.KeyFromBytes(f.Key)
		if err != nil {
			return nil, fmt.Errorf("shared file %s: %w", f.ID(), err)
		}
		for _, r := range f.With {
			entries = append(entries, share.Entry{To: r.Key, File: f.File, Key: k})
		}
	}
	s.Seq++
	return share.BuildManifest(key, s.Seq, c.cfg.Now(), entries, c.cfg.Rand)
}

// allowFunc returns the access rule of the own node: the current manifest
// to anyone, a file to the users it is shared with. It reads shares.json
// when it changed on disk, so files shared while `listen` runs are
// served at once.
func (c *Client) allowFunc() func(kez.PublicKey, blob.Hash) bool {
	var (
		mu    sync.Mutex
		mtime int64
		cur   shares
	)
	return func(peer kez.PublicKey, h blob.Hash) bool {
		mu.Lock()
		defer mu.Unlock()
		if fi, err := os.Stat(c.p.path(sharesFile)); err == nil && fi.ModTime().UnixNano() != mtime {
			if s, err := c.p.shares(); err == nil {
				cur, mtime = s, fi.ModTime().UnixNano()
			}
		}
		if cur.Manifest != nil && *cur.Manifest == h {
			return true
		}
		for _, f := range cur.Files {
			if f.File.Blob == h {
				return slices.ContainsFunc(f.With, func(r Recipient) bool { return r.Key.Equal(peer) })
			}
		}
		return false
	}
}
