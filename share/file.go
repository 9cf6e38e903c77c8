package share

import (
	"fmt"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/multiformats/go-multiaddr"

	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/strictjson"
)

// Limits of the fields of a [File] and an [Announcement].
const (
	// MaxNameLen is the longest file name, in bytes of UTF-8 (the usual
	// file system limit for one path component).
	MaxNameLen = 255
	// MaxMIMELen is the longest media type, in bytes.
	MaxMIMELen = 255
	// MaxAddrs is the most multiaddrs an announcement carries (as many as
	// a sigchain p2p endpoint).
	MaxAddrs = 32
	// MaxAddrLen is the longest multiaddr, in bytes of its text form.
	MaxAddrLen = 256
)

// File describes one shared file: what a receiver needs, besides the
// content key, to fetch its blob, check it and save it. The same
// description appears in an [Announcement] and in a manifest [Entry], and
// [File.Validate] is the one check of it.
type File struct {
	// Blob is the content address of the encrypted kez-file-v1 stream.
	Blob blob.Hash
	// Size is the length of that stream in bytes.
	Size int64
	// Name is the file's base name, for display and as the default save
	// name: never a path (see [CheckName]).
	Name string
	// FileSize is the plaintext size, filecrypt.PlaintextSize(Size).
	FileSize int64
	// MIME is the media type, such as "image/png" or
	// "text/plain; charset=utf-8"; "" if unknown.
	MIME string
	// SharedAt is when the file was shared, in unix seconds (the sender's
	// claim).
	SharedAt int64
}

// Validate reports whether f is a valid description of a shared file. It
// returns [ErrFileSize] if Size is not the size of a kez-file-v1 stream or
// FileSize is not its plaintext size, [ErrName] for a bad Name (see
// [CheckName]), and [ErrMalformed] for a bad MIME or a number out of
// range.
func (f File) Validate() error {
	if f.Size < 0 || f.Size > MaxSafeInteger || f.SharedAt < 0 || f.SharedAt > MaxSafeInteger {
		return fmt.Errorf("%w: size and shared_at must be integers from 0 to 2^53-1", ErrMalformed)
	}
	n, err := filecrypt.PlaintextSize(f.Size)
	if err != nil {
		return fmt.Errorf("%w: no kez-file-v1 stream has %d bytes", ErrFileSize, f.Size)
	}
	if n != f.FileSize {
		return fmt.Errorf("%w: a %d-byte stream holds %d bytes, not %d", ErrFileSize, f.Size, n, f.FileSize)
	}
	if err := CheckName(f.Name); err != nil {
		return err
	}
	if f.MIME != "" {
		if err := checkMIME(f.MIME); err != nil {
			return err
		}
	}
	return nil
}

// CheckName reports whether name is an acceptable file name: 1 to
// [MaxNameLen] bytes of valid UTF-8; no '/', '\\' or ':' (path, drive and
// stream separators on Unix and Windows); no control characters (U+0000 to
// U+001F, U+007F to U+009F), line or paragraph separators (U+2028,
// U+2029) or bidirectional controls (U+061C, U+200E, U+200F, U+202A to
// U+202E, U+2066 to U+2069), which could disguise a name on screen; and
// not ending in '.' or ' ' (Windows drops those, so "..." or ".. " could
// become ".."; this also excludes "." and ".."). Such a name is always a
// single path component that stays inside the directory it is joined to,
// on every system. Otherwise it returns [ErrName].
//
// A receiver refuses an announcement or entry whose name breaks these
// rules rather than repairing it: a sender's client makes its names with
// [SanitizeName], so a bad name means a broken or hostile sender. Saving
// code should still open the file through [os.Root] or check
// [path/filepath.IsLocal], which also refuses Windows device names such as
// "CON".
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: must be 1 to %d bytes", ErrName, MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: not valid UTF-8", ErrName)
	}
	for _, r := range name {
		if badNameRune(r) {
			return fmt.Errorf("%w: contains %U", ErrName, r)
		}
	}
	if c := name[len(name)-1]; c == '.' || c == ' ' {
		return fmt.Errorf("%w: must not end in '.' or ' '", ErrName)
	}
	return nil
}

// badNameRune reports whether r may not appear in a file name.
func badNameRune(r rune) bool {
	switch {
	case r == '/', r == '\\', r == ':':
		return true
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// maxKeptExt is the longest extension SanitizeName keeps when it shortens
// a name.
const maxKeptExt = 16

// SanitizeName turns the base name of a local file (the sender passes
// filepath.Base of the path it shares) into a name [CheckName] accepts:
// every forbidden character and invalid byte becomes '_', trailing '.'
// and ' ' are dropped, and a name longer than [MaxNameLen] bytes is cut at
// a character boundary, keeping an extension of up to 16 bytes. A name
// left empty becomes "file".
func SanitizeName(name string) string {
	var b strings.Builder
	for i, w := 0, 0; i < len(name); i += w {
		r, n := utf8.DecodeRuneInString(name[i:])
		w = n
		if (r == utf8.RuneError && n == 1) || badNameRune(r) {
			b.WriteByte('_')
			continue
		}
		b.WriteString(name[i : i+n])
	}
	s := strings.TrimRight(b.String(), ". ")
	if len(s) > MaxNameLen {
		ext := path.Ext(s)
		if len(ext) > maxKeptExt || len(ext) == len(s) {
			ext = ""
		}
		s = CutName(s[:len(s)-len(ext)], MaxNameLen-len(ext)) + ext
		s = strings.TrimRight(s, ". ")
	}
	if s == "" {
		return "file"
	}
	return s
}

// CutName returns the longest prefix of the valid UTF-8 string s of at
// most n bytes that ends at a character boundary.
func CutName(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// checkMIME accepts a media type with optional parameters, as
// mime.ParseMediaType reads it, in at most MaxMIMELen bytes of printable
// ASCII.
func checkMIME(s string) error {
	if len(s) > MaxMIMELen {
		return fmt.Errorf("%w: mime must be at most %d bytes", ErrMalformed, MaxMIMELen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%w: mime must be printable ASCII", ErrMalformed)
		}
	}
	if _, _, err := mime.ParseMediaType(s); err != nil {
		return fmt.Errorf("%w: mime is not a media type", ErrMalformed)
	}
	return nil
}

// CheckAddr reports whether s is an address an announcement may carry: a
// multiaddr of at most [MaxAddrLen] bytes in its canonical text form,
// starting with /ip4, /ip6, /dns, /dns4 or /dns6 (a network address, not
// a local socket), and not ending in /p2p/<peer id>: the peer to reach is
// always the sender's key, never one the address names. A relay circuit
// address ends in /p2p-circuit, e.g.
// /ip4/203.0.113.9/tcp/4001/p2p/<relay id>/p2p-circuit. Otherwise it
// returns [ErrAddr].
func CheckAddr(s string) error {
	if s == "" || len(s) > MaxAddrLen {
		return fmt.Errorf("%w: must be 1 to %d bytes", ErrAddr, MaxAddrLen)
	}
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil || len(m) == 0 {
		return fmt.Errorf("%w: not a multiaddr", ErrAddr)
	}
	if m.String() != s {
		return fmt.Errorf("%w: not in canonical form", ErrAddr)
	}
	switch m[0].Code() {
	case multiaddr.P_IP4, multiaddr.P_IP6, multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6:
	default:
		return fmt.Errorf("%w: must start with /ip4, /ip6, /dns, /dns4 or /dns6", ErrAddr)
	}
	if m[len(m)-1].Code() == multiaddr.P_P2P {
		return fmt.Errorf("%w: must not end in /p2p/<peer id>", ErrAddr)
	}
	return nil
}

// checkAddrs checks a list of addresses: at most MaxAddrs, each valid, none
// twice.
func checkAddrs(addrs []string) error {
	if len(addrs) > MaxAddrs {
		return fmt.Errorf("%w: at most %d addrs", ErrAddr, MaxAddrs)
	}
	for i, a := range addrs {
		if err := CheckAddr(a); err != nil {
			return fmt.Errorf("addrs[%d]: %w", i, err)
		}
		for _, b := range addrs[:i] {
			if a == b {
				return fmt.Errorf("addrs[%d]: %w: repeated", i, ErrAddr)
			}
		}
	}
	return nil
}

// fileFields are the members of a File's JSON form.
var fileFields = []string{"blob", "size", "name", "file_size", "mime", "shared_at"}

// fileJSON is a File's JSON form, as written: members in this order,
// "mime" omitted when empty.
type fileJSON struct {
	Blob     blob.Hash `json:"blob"`
	Size     int64     `json:"size"`
	Name     string    `json:"name"`
	FileSize int64     `json:"file_size"`
	MIME     string    `json:"mime,omitempty"`
	SharedAt int64     `json:"shared_at"`
}

func (f File) json() fileJSON {
	return fileJSON{f.Blob, f.Size, f.Name, f.FileSize, f.MIME, f.SharedAt}
}

// MarshalJSON writes f as announcements and manifest entries carry it:
// {"blob", "size", "name", "file_size", "mime" (if any), "shared_at"}.
func (f File) MarshalJSON() ([]byte, error) { return strictjson.Marshal(f.json()) }

// UnmarshalJSON reads f from that form, as strictly as [ParseAnnouncement]
// reads it, and validates it ([File.Validate]).
func (f *File) UnmarshalJSON(b []byte) error {
	o, err := strict.Parse(b, "file", fileFields...)
	if err != nil {
		return err
	}
	*f, err = parseFile(o)
	return err
}

// parseFile reads a File's members from o and validates it. A present
// "mime" must be non-empty.
func parseFile(o strictjson.Object) (File, error) {
	var f File
	s, err := o.String("blob", true)
	if err != nil {
		return File{}, err
	}
	if f.Blob, err = blob.ParseHash(s); err != nil {
		return File{}, o.Errorf("blob: %w", err)
	}
	if f.Size, err = o.Int("size"); err != nil {
		return File{}, err
	}
	if f.Name, err = o.String("name", true); err != nil {
		return File{}, err
	}
	if f.FileSize, err = o.Int("file_size"); err != nil {
		return File{}, err
	}
	if f.MIME, err = o.String("mime", false); err != nil {
		return File{}, err
	}
	if o.Has("mime") && f.MIME == "" {
		return File{}, o.Errorf("mime must be omitted, not empty")
	}
	if f.SharedAt, err = o.Int("shared_at"); err != nil {
		return File{}, err
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("%s: %w", o.What(), err)
	}
	return f, nil
}
