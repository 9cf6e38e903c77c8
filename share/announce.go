package share

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"kez.lat/kez"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/message"
	"kez.lat/kez/strictjson"
)

// AnnouncementVersion is the announcement version ("v") this package reads
// and writes.
const AnnouncementVersion = 1

// MaxAnnouncementSize is the longest announcement, in bytes. The fields'
// own limits keep a valid one far below it (about 10 KiB with every field
// at its limit); it only stops work on absurd input.
const MaxAnnouncementSize = 32 << 10

// Announcement is the plaintext of a file_share chat message
// ([message.TypeFileShare]): a [File], its content key wrapped for the
// recipient, and where the sender's node can be reached. It travels inside
// a kez-msg-v1 envelope, which the receiver has verified against the
// sender's pinned key before it reads the announcement.
//
// An announcement carries no peer ID: the node to fetch from is the
// sender's own (its node key is its primary key), so the receiver dials the
// peer ID of the key that signed the message at [Announcement.Addrs], and
// no announcement can send it to another node. Addrs never end in /p2p/
// (see [CheckAddr]).
type Announcement struct {
	File
	// WrappedKey is the content key, wrapped for the recipient with
	// [filecrypt.Wrap] for File.Blob: [message.WrappedKeySize] bytes.
	WrappedKey []byte
	// Addrs are multiaddrs where the sender's node could be reached when
	// it shared the file, relay circuit addresses included; nil if none
	// (the receiver then tries the sender's sigchain p2p endpoint).
	Addrs []string
}

// NewAnnouncement returns the announcement of f from the key pair from to
// the key to: it wraps the content key k for f.Blob with [filecrypt.Wrap],
// reading 32 bytes from rand (crypto/rand.Reader if nil), and validates
// the result as [ParseAnnouncement] would.
func NewAnnouncement(from *kez.PrivateKey, to kez.PublicKey, f File, k filecrypt.Key, addrs []string, rand io.Reader) (Announcement, error) {
	if err := f.Validate(); err != nil {
		return Announcement{}, fmt.Errorf("announcement: %w", err)
	}
	if k.IsZero() {
		return Announcement{}, fmt.Errorf("announcement: %w: zero content key", ErrMalformed)
	}
	if err := checkAddrs(addrs); err != nil {
		return Announcement{}, fmt.Errorf("announcement: %w", err)
	}
	w, err := filecrypt.Wrap(from, to, k, f.Blob, rand)
	if err != nil {
		return Announcement{}, fmt.Errorf("announcement: %w", err)
	}
	a := Announcement{File: f, WrappedKey: w}
	if len(addrs) > 0 {
		a.Addrs = append([]string(nil), addrs...)
	}
	return a, nil
}

// Validate reports whether a is a valid announcement: a valid [File], a
// wrapped key of [message.WrappedKeySize] bytes, and at most [MaxAddrs]
// distinct addresses that [CheckAddr] accepts. Errors are those of
// [File.Validate], [ErrAddr] and [ErrMalformed].
func (a Announcement) Validate() error {
	if err := a.File.Validate(); err != nil {
		return err
	}
	if len(a.WrappedKey) != message.WrappedKeySize {
		return fmt.Errorf("%w: key must be %d bytes", ErrMalformed, message.WrappedKeySize)
	}
	return checkAddrs(a.Addrs)
}

// announceFields are the members of an announcement.
var announceFields = append([]string{"type", "v", "key", "addrs"}, fileFields...)

// announceJSON is the announcement as written: members in this order.
type announceJSON struct {
	Type string `json:"type"`
	V    int    `json:"v"`
	fileJSON
	Key   []byte   `json:"key"`
	Addrs []string `json:"addrs"`
}

// Marshal returns the JSON form of a, the exact plaintext bytes of its
// chat message:
//
//	{"type":"file_share","v":1,"blob":"<hex>","size":N,"name":"...",
//	 "file_size":N,"mime":"...","shared_at":T,"key":"<base64>","addrs":[...]}
//
// compact, without HTML escaping, "mime" omitted when empty. It returns
// the errors of [Announcement.Validate].
func (a Announcement) Marshal() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("announcement: %w", err)
	}
	addrs := a.Addrs
	if addrs == nil {
		addrs = []string{}
	}
	return strictjson.Marshal(announceJSON{message.TypeFileShare, AnnouncementVersion, a.File.json(), a.WrappedKey, addrs})
}

// Plaintext returns a as the plaintext of a chat message, ready for
// [message.Seal].
func (a Announcement) Plaintext() (message.Plaintext, error) {
	b, err := a.Marshal()
	if err != nil {
		return message.Plaintext{}, err
	}
	return message.NewPlaintext(b)
}

// ParseAnnouncement reads the plaintext of a file_share message (as
// [message.Plaintext.Raw] returns it) strictly: at most
// [MaxAnnouncementSize] bytes ([ErrTooLarge]); one JSON object in UTF-8
// with no repeated member and no member but those [Announcement.Marshal]
// writes; "type" "file_share"; "v" 1 ([ErrVersion]); blob 64 lowercase
// hex; integers in plain decimal from 0 to 2^53-1; key canonical base64 of
// 80 bytes; addrs an array of strings; and then [Announcement.Validate].
// Errors wrap [ErrMalformed] and never quote the key.
func ParseAnnouncement(raw []byte) (Announcement, error) {
	if len(raw) > MaxAnnouncementSize {
		return Announcement{}, fmt.Errorf("announcement: %w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxAnnouncementSize)
	}
	o, err := strict.Parse(raw, "announcement", announceFields...)
	if err != nil {
		return Announcement{}, err
	}
	typ, err := o.String("type", true)
	if err != nil {
		return Announcement{}, err
	}
	if typ != message.TypeFileShare {
		return Announcement{}, o.Errorf("type must be %q", message.TypeFileShare)
	}
	v, err := o.Int("v")
	if err != nil {
		return Announcement{}, err
	}
	if v != AnnouncementVersion {
		return Announcement{}, fmt.Errorf("announcement: %w: %d", ErrVersion, v)
	}
	var a Announcement
	if a.File, err = parseFile(o); err != nil {
		return Announcement{}, err
	}
	if a.WrappedKey, err = o.Bytes("key", message.WrappedKeySize); err != nil {
		return Announcement{}, err
	}
	if a.Addrs, err = addrs(o, MaxAddrs); err != nil {
		return Announcement{}, err
	}
	if err := checkAddrs(a.Addrs); err != nil {
		return Announcement{}, fmt.Errorf("announcement: %w", err)
	}
	return a, nil
}

// ContentKey returns the file's content key, unwrapping a.WrappedKey as
// the recipient me from sender from: the key that signed the chat message
// the announcement came in. It returns [ErrDecrypt] if the key does not
// unwrap: another sender or recipient, or a key wrapped for another blob.
func (a Announcement) ContentKey(me *kez.PrivateKey, from kez.PublicKey) (filecrypt.Key, error) {
	k, err := filecrypt.Unwrap(me, from, a.WrappedKey, a.Blob)
	if err != nil {
		return filecrypt.Key{}, fmt.Errorf("announcement: %w: %w", ErrDecrypt, err)
	}
	return k, nil
}

// Equal reports whether a and b are the same announcement.
func (a Announcement) Equal(b Announcement) bool {
	return a.File == b.File && bytes.Equal(a.WrappedKey, b.WrappedKey) && slices.Equal(a.Addrs, b.Addrs)
}
