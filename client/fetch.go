package client

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/message"
	"kez.lat/kez/p2p"
	"kez.lat/kez/share"
)

// Offer is a file someone shares with the user: announced in a message,
// or listed in their shared-files manifest.
type Offer struct {
	ID      string        `json:"id"` // the short form of File.Blob
	From    kez.Handle    `json:"from"`
	FromKey kez.PublicKey `json:"from_key"`
	File    share.File    `json:"file"`

	addrs []string
	key   filecrypt.Key
}

func offerOf(from kez.Handle, fromKey kez.PublicKey, f share.File, k filecrypt.Key, addrs []string) Offer {
	return Offer{ID: f.Blob.String()[:idLen], From: from, FromKey: fromKey, File: f, addrs: addrs, key: k}
}

// Announcement returns the offer a received file_share message makes.
func (c *Client) Announcement(e Entry) (Offer, error) {
	_, key, err := c.account()
	if err != nil {
		return Offer{}, err
	}
	if e.Dir != DirIn || e.Type != message.TypeFileShare {
		return Offer{}, fmt.Errorf("message %s is not a received file announcement", e.ID)
	}
	ann, err := share.ParseAnnouncement(e.Plaintext)
	if err != nil {
		return Offer{}, err
	}
	k, err := ann.ContentKey(key, e.PeerKey)
	if err != nil {
		return Offer{}, err
	}
	return offerOf(e.Peer, e.PeerKey, ann.File, k, ann.Addrs), nil
}

// Offers returns the files announced to the user (by h only, if not
// zero), oldest first. Announcements that do not parse or open are
// skipped.
func (c *Client) Offers(h kez.Handle) ([]Offer, error) {
	es, err := c.History(h)
	if err != nil {
		return nil, err
	}
	var out []Offer
	for _, e := range es {
		if e.Dir != DirIn || e.Type != message.TypeFileShare || e.Quarantined {
			continue
		}
		if o, err := c.Announcement(e); err == nil {
			out = append(out, o)
		}
	}
	return out, nil
}

// FetchOptions tune [Client.Fetch] and [Client.Browse].
type FetchOptions struct {
	// From is whose file it is; needed only for a file that was not
	// announced to the user but is in From's manifest.
	From kez.Handle
	// Output is where to save the file: a path, or an existing directory
	// to save it in under its name. Default: its name in the current
	// directory. An existing file is never overwritten. Saved under its
	// name, a file whose name starts with '.' starts with '_' instead,
	// and a name Windows cannot create, such as "CON" or "a?.txt", is
	// changed ([FetchResult.Renamed]).
	Output string
	// Wait is how long to wait for the sender to come online when their
	// node cannot be reached (0: fail at once with ErrSenderOffline).
	Wait time.Duration
	// Progress, if not nil, is called as verified bytes arrive.
	Progress func(FetchProgress)
	// Waiting, if not nil, is called once the sender's node could not be
	// reached and Fetch starts waiting for them.
	Waiting func(from kez.Handle, until time.Time)
	// Notice, if not nil, is told what the user should know of a fetch
	// that goes on, such as why an earlier partial download is not
	// resumed.
	Notice func(msg string)
	// MaxSize is the largest file size, as announced by the sender, that
	// Fetch downloads; 0 means [DefaultMaxFetchSize]. A larger file is
	// refused before any byte of it is written: the size is the sender's
	// claim, and a hostile sender could otherwise fill the disk.
	MaxSize int64
	// MinRate is the slowest the sender's node may send before the
	// download stops with [p2p.ErrStalled] (resumable); zero fields take
	// the defaults of [p2p.DefaultMinRate]: the first byte within 15 s,
	// then 64 KiB every 30 s. A hostile or frozen node would otherwise
	// hold the download for as long as it sent a byte now and then.
	MinRate p2p.MinRate
}

// DefaultMaxFetchSize is the default of [FetchOptions.MaxSize], 64 GiB.
const DefaultMaxFetchSize = 64 << 30

// FetchProgress is how far a download is.
type FetchProgress struct {
	Done, Total int64
	// Route is "direct" or "relayed".
	Route string
}

// FetchResult is what [Client.Fetch] did.
type FetchResult struct {
	Offer Offer  `json:"offer"`
	Path  string `json:"path"`
	// Route is how the last bytes came: "direct" or "relayed" ("" if the
	// blob was in the store already).
	Route string `json:"route,omitempty"`
	// Resumed is the number of bytes a previous, interrupted fetch had
	// verified.
	Resumed int64 `json:"resumed,omitempty"`
	// Renamed reports that the file was saved under another name than
	// the sender's, unless [FetchOptions.Output] names the file: a name
	// starting with '.' starts with '_' instead, a Windows device name
	// such as "CON" or "nul.txt" gets a '_' in front, and each of
	// < > " | ? * becomes '_' (on every system).
	Renamed bool `json:"renamed,omitempty"`
}

// Errors of fetching.
var (
	// ErrSenderOffline: the sender's node could not be reached (within
	// the wait).
	ErrSenderOffline = errors.New("the sender's node is not reachable")
	// ErrFileExists: the output file exists; it is never overwritten.
	ErrFileExists = errors.New("file exists")
	// ErrFileTooLarge: the announced size is over FetchOptions.MaxSize.
	ErrFileTooLarge = errors.New("file too large")
	// ErrFetchRunning: another fetch of the same file, in this process or
	// another, is under way: two would write the same partial file.
	ErrFetchRunning = errors.New("another kez-chat fetch of this file is running")
)

// Fetch downloads the file whose ID starts with id (from an announcement
// to the user, or from opts.From's manifest), verified chunk by chunk,
// straight from the sender's node (directly or through a relay), then
// decrypts it to the output file. An interrupted fetch resumes where it
// stopped on the next call. The sender must be online: with opts.Wait,
// Fetch waits for their presence and starts when they return.
func (c *Client) Fetch(ctx context.Context, id string, opts FetchOptions) (FetchResult, error) {
	id, err := checkID(id)
	if err != nil {
		return FetchResult{}, err
	}
	o, err := c.findOffer(ctx, id, opts)
	if err != nil {
		return FetchResult{}, err
	}
	res := FetchResult{Offer: o}
	limit := cmp.Or(opts.MaxSize, DefaultMaxFetchSize)
	if o.File.Size > limit {
		return res, withHint(fmt.Errorf("%w: @%s announced %s as %d bytes, more than the %d this fetch accepts; nothing was written",
			ErrFileTooLarge, o.From, o.File.Name, o.File.Size, limit), "if you expect a file that large: kez-chat fetch --max-size "+strconv.FormatInt(o.File.Size, 10)+" "+id)
	}
	if res.Path, res.Renamed, err = outputPath(opts.Output, o.File.Name); err != nil {
		return res, err
	}
	a, _, err := c.account()
	if err != nil {
		return res, err
	}
	// Refreshed: the sender's sigchain lists where their node is now.
	ct, err := c.sendContact(ctx, a, o.From, SendOptions{})
	if err != nil {
		return res, err
	}
	if !ct.Key.Equal(o.FromKey) {
		return res, fmt.Errorf("@%s announced %s with key %s, no longer the pinned key", o.From, o.File.Name, o.FromKey)
	}
	// What an earlier version left: a download of the encrypted blob.
	if store, err := c.blobs(); err == nil && !store.Has(o.File.Blob) {
		_ = store.Remove(o.File.Blob)
	}
	res.Resumed, err = receiveFile(c.p.path(downloadsDir), o.File.Blob, o.File.Size, o.key, res.Path, opts.Notice, func(get getFunc) error {
		res.Route, err = c.download(ctx, ct, o.File.Size, o.addrs, opts, get)
		return err
	})
	if errors.Is(err, filecrypt.ErrDecrypt) || errors.Is(err, filecrypt.ErrHeader) {
		return res, fmt.Errorf("@%s's file %s does not decrypt with the key @%s sent: %w; nothing of it was kept", o.From, o.File.Name, o.From, err)
	}
	return res, err
}

// findOffer finds the offer with blob ID prefix id: among the
// announcements (of opts.From, if set), else in opts.From's manifest.
func (c *Client) findOffer(ctx context.Context, id string, opts FetchOptions) (Offer, error) {
	offers, err := c.Offers(opts.From)
	if err != nil {
		return Offer{}, err
	}
	o, err := pickOffer(offers, id)
	if err == nil || !errors.Is(err, ErrNoSuchFile) || opts.From.IsZero() {
		if errors.Is(err, ErrNoSuchFile) {
			err = withHint(err, "kez-chat history shows the files announced to you; for a file in someone's manifest: kez-chat fetch --from @user ID")
		}
		return o, err
	}
	l, err := c.Browse(ctx, opts.From, FetchOptions{Wait: opts.Wait, Waiting: opts.Waiting, MinRate: opts.MinRate})
	if err != nil {
		return Offer{}, err
	}
	o, err = pickOffer(l.Files, id)
	if errors.Is(err, ErrNoSuchFile) {
		err = withHint(err, "kez-chat browse @"+opts.From.String()+" lists what @"+opts.From.String()+" shares with you")
	}
	return o, err
}

func pickOffer(offers []Offer, id string) (Offer, error) {
	var found *Offer
	for i := range offers {
		if strings.HasPrefix(offers[i].File.Blob.String(), id) {
			if found != nil && found.File.Blob != offers[i].File.Blob {
				return Offer{}, withHint(fmt.Errorf("file ID %s is ambiguous", id), "give more digits")
			}
			found = &offers[i] // the latest announcement of the same blob wins
		}
	}
	if found == nil {
		return Offer{}, fmt.Errorf("%w: %s", ErrNoSuchFile, id)
	}
	return *found, nil
}

// outputPath returns where to save a file called name: out, or name in
// out if out is a directory, or name in the current directory. It
// returns ErrFileExists if that path exists.
//
// When the sender's name is used (out is not a file's path), it is first
// made safe (renamed reports whether it changed):
//   - a leading '.' becomes '_', as browsers do with downloads: the
//     sender chose the name, and a hidden file such as .bash_profile or
//     .zshenv created in the current directory (often the home
//     directory) would be run by the user's shell, unseen by a plain ls;
//   - a name Windows cannot create is changed as [windowsName] does. This
//     holds on every system: a file saved on one often ends up on a
//     Windows machine or a drive formatted for one.
//
// The rest of what Windows refuses ('/', '\\', ':', control characters, a
// trailing '.' or ' ') no sender's name has: the announcement and
// manifest parsers refuse it ([share.CheckName]), and so does
// outputPath, returning [share.ErrName], should one come another way.
// A user who wants the sender's name as it is gives it with -o.
func outputPath(out, name string) (p string, renamed bool, err error) {
	p = out
	if fi, err := os.Stat(out); out == "" || (err == nil && fi.IsDir()) {
		if err := share.CheckName(name); err != nil {
			return "", false, fmt.Errorf("%q: %w", name, err)
		}
		if rest, ok := strings.CutPrefix(name, "."); ok {
			name, renamed = "_"+rest, true
		}
		if w := windowsName(name); w != name {
			name, renamed = w, true
		}
		p = filepath.Join(out, name)
	}
	if _, err := os.Lstat(p); err == nil {
		return p, renamed, withHint(fmt.Errorf("%s: %w", p, ErrFileExists), "choose another path with -o; nothing is overwritten")
	} else if !errors.Is(err, os.ErrNotExist) {
		return p, renamed, err
	}
	return p, renamed, nil
}

// windowsName returns name, a name [share.CheckName] accepts, as Windows
// can create it: each of < > " | ? * (which Windows refuses in names)
// becomes '_', and a device name gets a '_' in front: CON, PRN, AUX, NUL,
// COM0 to COM9, LPT0 to LPT9 (and COM or LPT with ¹, ² or ³), CONIN$ and
// CONOUT$, in any case, alone or before an extension ("nul.txt",
// "Com1.tar.gz"). Windows opens the device for such a name in any
// directory: a write to it goes nowhere, or to a printer or serial port.
func windowsName(name string) string {
	name = strings.Map(func(r rune) rune {
		if strings.ContainsRune(`<>"|?*`, r) {
			return '_'
		}
		return r
	}, name)
	if windowsDevice(name) {
		name = share.SanitizeName("_" + name) // shortened if need be
	}
	return name
}

// windowsDevice reports whether Windows takes name for a device: the part
// before the first '.', less trailing spaces ("CON .txt" is CON too), is a
// device name in any case of its ASCII letters.
func windowsDevice(name string) bool {
	base, _, _ := strings.Cut(name, ".")
	b := []byte(strings.TrimRight(base, " "))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	s := string(b)
	switch s {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(s) < 4 || (s[:3] != "COM" && s[:3] != "LPT") {
		return false
	}
	switch s[3:] {
	case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "\u00b9", "\u00b2", "\u00b3":
		return true
	}
	return false
}

// Retry timing of a download from a sender who is offline.
const (
	// recheck is the longest wait between two attempts while the sender
	// seems offline: their sigchain may list new addresses by then.
	recheck = 30 * time.Second
	// onlineBackoff is the first wait after a failed attempt while the
	// sender is online (their node may still be starting); it doubles.
	onlineBackoff = time.Second
)

// download fetches a blob of size bytes from ct's node with get, trying
// the addresses ct's sigchain advertises and hint, again after an
// interruption that another attempt may overcome (get resumes). While the
// node cannot be reached it waits, up to opts.Wait, for ct to come
// online. It returns the route the bytes took.
func (c *Client) download(ctx context.Context, ct Contact, size int64, hint []string, opts FetchOptions, get getFunc) (string, error) {
	n, err := c.startNode(ctx, nil, false, opts.MinRate, nil)
	if err != nil {
		return "", err
	}
	defer n.Close()
	deadline := c.cfg.Now().Add(opts.Wait)
	backoff := onlineBackoff
	waiting := false
	for {
		src, err := n.Peer(ct.Key, addrsOf(ct, hint))
		if err != nil {
			return "", err
		}
		route := ""
		progress := func(v int64) {
			if opts.Progress != nil {
				if route == "" { // the connection of this attempt
					route = n.Route(ct.Key)
				}
				opts.Progress(FetchProgress{Done: v, Total: size, Route: route})
			}
		}
		err = get(ctx, src, progress)
		if err == nil {
			return n.Route(ct.Key), nil
		}
		if errors.Is(err, p2p.ErrUpgraded) {
			continue // on the direct connection, from the verified length
		}
		if !errors.Is(err, p2p.ErrUnreachable) {
			return "", fetchError(ct.Handle, err)
		}
		if !c.cfg.Now().Before(deadline) {
			if opts.Wait > 0 {
				return "", withHint(fmt.Errorf("%w: @%s did not come online within %s", ErrSenderOffline, ct.Handle, opts.Wait),
					"run the same command again later: the download resumes where it stopped")
			}
			return "", withHint(fmt.Errorf("%w: @%s", ErrSenderOffline, ct.Handle),
				"files come straight from the sender's device: @"+ct.Handle.String()+" must be running `kez-chat listen`",
				"--wait 1h waits for @"+ct.Handle.String()+" to come online")
		}
		if !waiting && opts.Waiting != nil {
			opts.Waiting(ct.Handle, deadline)
		}
		waiting = true
		online, err := c.awaitSender(ctx, ct.Key, backoff, min(recheck, deadline.Sub(c.cfg.Now())))
		if err != nil {
			return "", err
		}
		if online {
			backoff = min(2*backoff, recheck)
		} else {
			backoff = onlineBackoff
		}
		if fresh, err := c.Refresh(ctx, ct); err == nil {
			ct = fresh // the sender's node may advertise new addresses
		}
	}
}

// fetchError explains a failed download.
func fetchError(h kez.Handle, err error) error {
	switch {
	case errors.Is(err, p2p.ErrNotShared):
		return withHint(fmt.Errorf("@%s's node refused: %w", h, err), "@"+h.String()+" may have unshared it")
	case errors.Is(err, blob.ErrCorrupt):
		return withHint(fmt.Errorf("@%s's node sent data that does not match the file's hash: %w", h, err),
			"nothing unverified was kept; run the command again to resume from the verified part")
	case errors.Is(err, p2p.ErrStalled):
		return withHint(fmt.Errorf("download from @%s stopped, too slow: %w", h, err),
			"run the same command again: the download resumes where it stopped",
			"on a very slow link, --min-rate lowers your device's bar (such as --min-rate 16KiB/60s); "+
				"the sender's device holds your reads to its own, 64 KiB per 30 s, whatever you set")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return withHint(err, "run the same command again: the download resumes where it stopped")
	}
	return withHint(fmt.Errorf("download from @%s: %w", h, err), "run the same command again: the download resumes where it stopped")
}

// addrsOf returns the addresses of ct's node: those its sigchain
// advertises, then the others of hint.
func addrsOf(ct Contact, hint []string) []string {
	var out []string
	seen := map[string]bool{}
	if ep := p2pEndpoint(ct.Chain, PeerID(ct.Key)); ep != nil {
		for _, a := range ep.Addrs {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range hint {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// awaitSender waits before the next attempt to reach key's node, at most
// d: for backoff if key's presence says online (its node may still be
// starting), else until key announces itself online. It reports whether
// key was online. Presence is a hint: without the broker it just waits d.
func (c *Client) awaitSender(ctx context.Context, key kez.PublicKey, backoff, d time.Duration) (online bool, err error) {
	var ch chan *nats.Msg
	if a, k, err := c.account(); err == nil {
		if nc, err := c.conn(a, k); err == nil {
			// Subscribed before the presence is read, so that an
			// announcement in between is not missed.
			ch = make(chan *nats.Msg, 8)
			if sub, err := nc.ChanSubscribe(kez.PresenceLiveSubject(key), ch); err == nil {
				defer sub.Unsubscribe()
			}
			p, err := GetPresence(ctx, nc, key, c.cfg.Now())
			online = err == nil && p.State == PresenceOnline
		}
	}
	if online {
		d = min(d, backoff)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return online, ctx.Err()
		case <-t.C:
			return online, nil
		case m := <-ch:
			if p, ok := presenceOf(key, m, c.cfg.Now()); !online && ok && p.State == PresenceOnline {
				return online, nil
			}
		}
	}
}

// Listing is what a user shares with the user, from their manifest.
type Listing struct {
	Owner kez.Handle `json:"owner"`
	// Seq is the manifest's sequence number (0: the owner shares nothing).
	Seq   uint64  `json:"seq"`
	Files []Offer `json:"files"`
	// Problem reports entries for the user that did not open (the
	// owner's bug or malice); the others are listed.
	Problem string `json:"problem,omitempty"`
}

// Browse returns what contact h shares with the user: it reads h's
// verified sigchain for the current manifest's hash, fetches the manifest
// from h's node (waiting up to opts.Wait for h to come online), checks
// h's signature, and opens the entries addressed to the user. The
// manifest is held in memory only: it never touches the user's blob
// store.
func (c *Client) Browse(ctx context.Context, h kez.Handle, opts FetchOptions) (Listing, error) {
	a, key, err := c.account()
	if err != nil {
		return Listing{}, err
	}
	ct, err := c.sendContact(ctx, a, h, SendOptions{})
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Owner: ct.Handle, Files: []Offer{}}
	ptr := ct.Chain.SharedFiles
	if ptr == nil {
		return l, nil
	}
	mh, err := blob.ParseHash(ptr.Manifest)
	if err != nil {
		return l, err
	}
	if ptr.Size <= 0 || ptr.Size > share.MaxManifestSize {
		return l, fmt.Errorf("@%s's sigchain names a manifest of %d bytes (at most %d)", h, ptr.Size, share.MaxManifestSize)
	}
	raw, err := c.fetchManifest(ctx, ct, mh, ptr.Size, opts)
	if err != nil {
		return l, err
	}
	m, err := share.ParseManifest(raw, ct.Key)
	if err != nil {
		return l, fmt.Errorf("@%s's manifest: %w", h, err)
	}
	l.Seq = m.Seq()
	entries, err := m.Open(key)
	if err != nil {
		l.Problem = err.Error()
	}
	for _, e := range entries {
		l.Files = append(l.Files, offerOf(ct.Handle, ct.Key, e.File, e.Key, nil))
	}
	return l, nil
}

// fetchManifest downloads the manifest blob mh of size bytes (at most
// [share.MaxManifestSize]) from ct's node into memory, verified as it
// arrives, resuming after an interruption from what it verified.
//
// It never reads or writes the user's blob store. ct chose mh and size:
// a hostile contact can name a blob the user holds, such as her own
// manifest or a file she shares, and a manifest fetched into the store,
// then removed once read, deleted that blob (and her node then refused
// to serve it); a failed fetch into the store also left its partial
// files there for good.
func (c *Client) fetchManifest(ctx context.Context, ct Contact, mh blob.Hash, size int64, opts FetchOptions) ([]byte, error) {
	var buf bytes.Buffer
	get := func(ctx context.Context, src blob.Source, progress func(int64)) error {
		if int64(buf.Len()) == size {
			return nil
		}
		// What blob.Get wrote before an error is a verified prefix.
		w := writerFunc(func(p []byte) (int, error) {
			n, err := buf.Write(p)
			if progress != nil {
				progress(int64(buf.Len()))
			}
			return n, err
		})
		return blob.Get(ctx, src, mh, size, int64(buf.Len()), w)
	}
	if _, err := c.download(ctx, ct, size, nil, opts, get); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writerFunc is an [io.Writer] that is a function.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
