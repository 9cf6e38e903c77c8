package share

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"lukechampine.com/blake3"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/message"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/strictjson"
)

// ManifestVersion is the payload version ("v") this package reads and
// writes.
const ManifestVersion = 1

// Limits of a manifest.
const (
	// MaxManifestSize is the longest manifest, in bytes, checked before
	// anything else is parsed.
	MaxManifestSize = 4 << 20
	// MaxEntries is the most entries (boxes) a manifest holds, for all
	// recipients together. With typical names (40 bytes) that many take
	// about 3 MiB; with long names MaxManifestSize binds first.
	MaxEntries = 4096
	// MaxEntrySize is the longest JSON form of one entry inside its box,
	// in bytes: far more than a valid entry needs (about 1 KiB with
	// every field at its limit and written with \u escapes).
	MaxEntrySize = 2048
	// boxOverhead is what a box adds to its entry: the wrapped box key
	// and the AEAD tag.
	boxOverhead = message.WrappedKeySize + chacha20poly1305.Overhead
)

// Entry is one file in a manifest, for one recipient: the [File] and its
// content key, which the box keeps from everyone else.
type Entry struct {
	// To is the recipient. Share with several users by giving each an
	// Entry; an entry To the owner itself lets the owner read its own
	// manifest back.
	To kez.PublicKey
	File
	// Key is the file's content key.
	Key filecrypt.Key
}

// Validate reports whether e is a valid entry: a recipient, a valid
// [File] and a content key.
func (e Entry) Validate() error {
	if e.To.IsZero() {
		return fmt.Errorf("%w: entry: zero recipient key", kez.ErrInvalidKey)
	}
	if err := e.File.Validate(); err != nil {
		return fmt.Errorf("entry: %w", err)
	}
	if e.Key.IsZero() {
		return fmt.Errorf("%w: entry: zero content key", ErrMalformed)
	}
	return nil
}

// entryFields are the members of an entry's JSON form.
var entryFields = append([]string{"key"}, fileFields...)

// entryJSON is an entry as sealed in its box: the File's members, then the
// raw 32-byte content key in base64.
type entryJSON struct {
	fileJSON
	Key []byte `json:"key"`
}

// parseEntry reads an entry's JSON form strictly, like an announcement's
// file fields.
func parseEntry(b []byte, to kez.PublicKey) (Entry, error) {
	if len(b) > MaxEntrySize {
		return Entry{}, fmt.Errorf("entry: %w: %d bytes", ErrTooLarge, len(b))
	}
	o, err := strict.Parse(b, "entry", entryFields...)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{To: to}
	if e.File, err = parseFile(o); err != nil {
		return Entry{}, err
	}
	k, err := o.Bytes("key", filecrypt.KeySize)
	if err != nil {
		return Entry{}, err
	}
	e.Key, _ = filecrypt.KeyFromBytes(k) // 32 bytes: cannot fail
	clear(k)
	if e.Key.IsZero() {
		return Entry{}, o.Errorf("zero content key")
	}
	return e, nil
}

// boxAD is the associated data of a box for recipient to in owner's
// manifest, used both for wrapping the box key and for sealing the entry:
// "kez-manifest-v1\n" || owner (32 bytes) || to (32 bytes). A file's
// wrapped content key has "kez-file-v1\n" || blob hash as its AD, so
// neither kind of wrapped key opens as the other; and a box cannot be
// moved to another owner's or recipient's slot.
func boxAD(owner, to kez.PublicKey) []byte {
	b := make([]byte, 0, 16+64)
	b = append(b, "kez-manifest-v1\n"...)
	b = append(b, owner.Bytes()...)
	return append(b, to.Bytes()...)
}

// zeroNonce is the nonce of every box: each box key is 32 fresh random
// bytes sealing one entry, so a (key, nonce) pair is never used twice.
var zeroNonce [chacha20poly1305.NonceSize]byte

// sealBox seals the entry JSON pt for to:
//
//	bk  = 32 bytes from rand
//	box = WrapKey(owner, to, bk, ad) || ChaCha20-Poly1305(bk, zero nonce, pt, ad)
func sealBox(owner *message.Identity, to kez.PublicKey, pt []byte, rand io.Reader) ([]byte, error) {
	bk := make([]byte, chacha20poly1305.KeySize)
	defer clear(bk)
	if _, err := io.ReadFull(rand, bk); err != nil {
		return nil, fmt.Errorf("read box key: %w", err)
	}
	ad := boxAD(owner.Public(), to)
	box, err := message.WrapKey(owner, to, bk, ad, rand)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(bk)
	if err != nil {
		return nil, err
	}
	return aead.Seal(box, zeroNonce[:], pt, ad), nil
}

// openBox opens a box that owner sealed for me; [ErrDecrypt] if it does
// not open.
func openBox(me *message.Identity, owner kez.PublicKey, box []byte) ([]byte, error) {
	ad := boxAD(owner, me.Public())
	bk, err := message.UnwrapKey(me, owner, box[:message.WrappedKeySize], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	defer clear(bk)
	aead, err := chacha20poly1305.New(bk)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, zeroNonce[:], box[message.WrappedKeySize:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// payloadJSON is the manifest payload as written: members in this order.
type payloadJSON struct {
	V       int           `json:"v"`
	Owner   kez.PublicKey `json:"owner"`
	Seq     uint64        `json:"seq"`
	Ctime   int64         `json:"ctime"`
	Entries []boxJSON     `json:"entries"`
}

type boxJSON struct {
	To  kez.PublicKey `json:"to"`
	Box []byte        `json:"box"`
}

// BuildManifest returns the manifest of owner's shared files: version
// seq, created now, with one box per entry, in the order given. seq must
// be from 1 to 2^53-1 and greater than any manifest the owner published
// before, so that a reader who saw a newer one can tell an old one
// replayed. For each entry it reads a 32-byte box key and a 32-byte wrap
// salt from rand (crypto/rand.Reader if nil).
//
// It returns the errors of [Entry.Validate], [ErrMalformed] for a bad
// seq or time or an entry given twice (same recipient and blob), and
// [ErrTooLarge] past [MaxEntries] entries or [MaxManifestSize] bytes.
func BuildManifest(owner *kez.PrivateKey, seq uint64, now time.Time, entries []Entry, rand io.Reader) ([]byte, error) {
	if owner == nil {
		return nil, fmt.Errorf("manifest: %w: no owner key", kez.ErrInvalidKey)
	}
	if rand == nil {
		rand = crand.Reader
	}
	if seq == 0 || seq > MaxSafeInteger {
		return nil, fmt.Errorf("manifest: %w: seq must be from 1 to 2^53-1", ErrMalformed)
	}
	if now.Unix() < 0 || now.Unix() > MaxSafeInteger {
		return nil, fmt.Errorf("manifest: %w: time out of range", ErrMalformed)
	}
	if len(entries) > MaxEntries {
		return nil, fmt.Errorf("manifest: %w: %d entries, limit %d", ErrTooLarge, len(entries), MaxEntries)
	}
	type pair struct {
		to   kez.PublicKey
		blob blob.Hash
	}
	seen := make(map[pair]bool, len(entries))
	id := message.NewIdentity(owner)
	defer id.Close()
	p := payloadJSON{V: ManifestVersion, Owner: owner.Public(), Seq: seq, Ctime: now.Unix(), Entries: make([]boxJSON, 0, len(entries))}
	for i, e := range entries {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("manifest: entry %d: %w", i, err)
		}
		k := pair{e.To, e.Blob}
		if seen[k] {
			return nil, fmt.Errorf("manifest: entry %d: %w: same recipient and blob as an earlier entry", i, ErrMalformed)
		}
		seen[k] = true
		key := e.Key.Bytes()
		pt, err := strictjson.Marshal(entryJSON{e.File.json(), key})
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("manifest: entry %d: %w", i, err)
		}
		box, err := sealBox(id, e.To, pt, rand)
		clear(pt)
		if err != nil {
			return nil, fmt.Errorf("manifest: entry %d: %w", i, err)
		}
		p.Entries = append(p.Entries, boxJSON{e.To, box})
	}
	payload, err := strictjson.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	wire := strictjson.Signed{Payload: payload, Sig: owner.Sign(kez.PurposeManifest, payload)}.Marshal()
	if len(wire) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %w: %d bytes, limit %d", ErrTooLarge, len(wire), MaxManifestSize)
	}
	return wire, nil
}

// Pointer returns what the owner's sigchain says of the manifest whose
// exact bytes are raw, in its set_shared_files event: the BLAKE3 hash of
// raw (its [blob.Hash], as it is served as a blob) and its size. A reader
// compares it with the chain's latest [sigchain.State.SharedFiles] before
// trusting raw as the current manifest.
func Pointer(raw []byte) sigchain.SharedFiles {
	h := blob.Hash(blake3.Sum256(raw))
	return sigchain.SharedFiles{Manifest: h.String(), Size: int64(len(raw))}
}

// Manifest is a parsed manifest whose signature verified, from
// [ParseManifest]. Its boxes stay sealed until [Manifest.Open].
type Manifest struct {
	payload []byte
	sig     []byte
	owner   kez.PublicKey
	seq     uint64
	ctime   int64
	boxes   []boxJSON
}

// Owner returns the key that signed the manifest.
func (m Manifest) Owner() kez.PublicKey { return m.owner }

// Seq returns the manifest's version: a reader that has seen a manifest of
// the same owner with a higher seq is looking at an old one replayed.
func (m Manifest) Seq() uint64 { return m.seq }

// Ctime returns the creation time the owner claims, in unix seconds.
func (m Manifest) Ctime() int64 { return m.ctime }

// Len returns the number of entries, for all recipients.
func (m Manifest) Len() int { return len(m.boxes) }

// Recipients returns the recipient of each entry, in order. They are
// public: anyone who fetches the manifest sees whom its owner shares
// with, and how many files each (see docs/kez-file-v1.md).
func (m Manifest) Recipients() []kez.PublicKey {
	out := make([]kez.PublicKey, len(m.boxes))
	for i, b := range m.boxes {
		out[i] = b.To
	}
	return out
}

// Payload returns a copy of the exact signed payload bytes.
func (m Manifest) Payload() []byte { return bytes.Clone(m.payload) }

// Marshal returns the wire form of m, {"payload":"<base64>","sig":"<base64>"}:
// the bytes BuildManifest made, which another spelling of the same JSON
// that ParseManifest accepted would not hash to.
func (m Manifest) Marshal() []byte {
	return strictjson.Signed{Payload: m.payload, Sig: m.sig}.Marshal()
}

// ParseManifest parses and verifies the manifest raw of owner strictly. It
// returns [ErrTooLarge] past [MaxManifestSize] bytes or [MaxEntries]
// entries; [ErrMalformed] unless raw is one JSON object in UTF-8 with
// exactly the members payload (non-empty canonical base64) and sig (64
// bytes, canonical base64), and the payload one object with exactly v (1,
// else [ErrVersion]), owner (a key), seq (from 1), ctime (unix seconds)
// and entries (an array of objects with exactly to, a key, and box,
// canonical base64 of 98 to 2144 bytes), no member
// repeated; [ErrWrongOwner] if the payload's owner is not owner; and
// [ErrBadSignature] if the signature over [ManifestContext] and the
// payload does not verify under owner. It does not compare seq with
// earlier manifests; the caller does.
func ParseManifest(raw []byte, owner kez.PublicKey) (Manifest, error) {
	if len(raw) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("manifest: %w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxManifestSize)
	}
	if owner.IsZero() {
		return Manifest{}, fmt.Errorf("manifest: %w: zero owner key", kez.ErrInvalidKey)
	}
	s, err := strict.ParseSigned(raw, "manifest")
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{payload: s.Payload, sig: s.Sig}
	if err := m.parsePayload(); err != nil {
		return Manifest{}, err
	}
	if !m.owner.Equal(owner) {
		return Manifest{}, ErrWrongOwner
	}
	// The payload is parsed before the signature is checked, so that a
	// manifest of another owner is told apart from a forged one; the
	// parser takes any bytes (it is fuzzed), and nothing in the boxes is
	// touched before Open, which needs a verified manifest.
	if !owner.Verify(kez.PurposeManifest, m.payload, m.sig) {
		return Manifest{}, fmt.Errorf("manifest: %w", ErrBadSignature)
	}
	return m, nil
}

func (m *Manifest) parsePayload() error {
	o, err := strict.Parse(m.payload, "manifest payload", "v", "owner", "seq", "ctime", "entries")
	if err != nil {
		return err
	}
	v, err := o.Int("v")
	if err != nil {
		return err
	}
	if v != ManifestVersion {
		return fmt.Errorf("manifest: %w: %d", ErrVersion, v)
	}
	if m.owner, err = key(o, "owner"); err != nil {
		return err
	}
	seq, err := o.Uint("seq")
	if err != nil {
		return err
	}
	if seq == 0 {
		return o.Errorf("seq starts at 1")
	}
	m.seq = seq
	if m.ctime, err = o.Int("ctime"); err != nil {
		return err
	}
	elems, err := o.Array("entries", true)
	if err != nil {
		return err
	}
	if len(elems) > MaxEntries {
		return fmt.Errorf("manifest: %w: %d entries, limit %d", ErrTooLarge, len(elems), MaxEntries)
	}
	m.boxes = make([]boxJSON, 0, len(elems))
	for i, e := range elems {
		eo, err := strict.Object(e, fmt.Sprintf("manifest entry %d", i), "to", "box")
		if err != nil {
			return err
		}
		var b boxJSON
		if b.To, err = key(eo, "to"); err != nil {
			return err
		}
		if b.Box, err = eo.Bytes("box", -(boxOverhead + 2)); err != nil { // "{}" at least
			return err
		}
		if len(b.Box) > boxOverhead+MaxEntrySize {
			return fmt.Errorf("%w: manifest entry %d: box of %d bytes", ErrTooLarge, i, len(b.Box))
		}
		m.boxes = append(m.boxes, b)
	}
	return nil
}

// Open returns the entries of m addressed to me, in manifest order, each
// with To set to my public key. Boxes for other keys are skipped unread.
//
// A box addressed to me that does not open ([ErrDecrypt]), holds a
// malformed entry ([ErrMalformed] and the errors of [File.Validate]) or
// repeats the blob of an earlier entry for me is skipped and reported:
// Open then returns the entries that did open together with a non-nil
// error joining one error per skipped box, each naming its index. The
// manifest's signature vouches only that the owner made those boxes, so a
// bad one is the owner's bug or malice toward me, and it must not hide the
// others; callers show the entries and report the error.
func (m Manifest) Open(me *kez.PrivateKey) ([]Entry, error) {
	if me == nil {
		return nil, fmt.Errorf("manifest: %w: no key", kez.ErrInvalidKey)
	}
	pub := me.Public()
	id := message.NewIdentity(me)
	defer id.Close()
	var out []Entry
	var errs []error
	seen := map[blob.Hash]bool{}
	for i, b := range m.boxes {
		if !b.To.Equal(pub) {
			continue
		}
		pt, err := openBox(id, m.owner, b.Box)
		if err != nil {
			errs = append(errs, fmt.Errorf("manifest entry %d: %w", i, err))
			continue
		}
		e, err := parseEntry(pt, pub)
		clear(pt)
		if err != nil {
			errs = append(errs, fmt.Errorf("manifest entry %d: %w", i, err))
			continue
		}
		if seen[e.Blob] {
			errs = append(errs, fmt.Errorf("manifest entry %d: %w: blob repeated", i, ErrMalformed))
			continue
		}
		seen[e.Blob] = true
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}
