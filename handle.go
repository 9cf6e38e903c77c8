package kez

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// DefaultDomain is the home domain when none is configured.
const DefaultDomain = "kez.lat"

// Handle local parts are 2 to 30 characters of a-z, 0-9 and _, starting with
// a letter. The rule also keeps '.', '*', '>' and spaces out of NATS
// subjects and KV keys, where handles are used verbatim.
const (
	MinHandleLen = 2
	MaxHandleLen = 30
	maxDomainLen = 253
)

// Handle is a qualified handle such as alice@kez.lat, normalised to lower
// case. The zero value is not a valid handle.
type Handle struct {
	local, domain string
}

// ParseHandle parses "alice", "@alice", "alice@kez.lat" or "@alice@kez.lat"
// (any case) into a qualified handle; a bare local part gets defaultDomain.
// Errors wrap [ErrInvalidHandle].
func ParseHandle(s, defaultDomain string) (Handle, error) {
	s = lowerASCII(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "@")
	local, domain, qualified := strings.Cut(s, "@")
	if !qualified {
		domain = defaultDomain
	}
	if err := ValidateLocal(local); err != nil {
		return Handle{}, err
	}
	if err := ValidateDomain(domain); err != nil {
		return Handle{}, err
	}
	return Handle{local: local, domain: domain}, nil
}

// lowerASCII folds only A-Z. strings.ToLower would also map a few non-ASCII
// runes onto ASCII letters (U+212A KELVIN SIGN to "k", U+0130 to "i"), so
// such input would be accepted as another handle instead of refused.
func lowerASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// ValidateLocal reports whether local is a valid local part; the error wraps
// [ErrInvalidHandle] and says which rule failed.
func ValidateLocal(local string) error {
	if n := len(local); n < MinHandleLen || n > MaxHandleLen {
		return fmt.Errorf("%w: must be %d to %d characters", ErrInvalidHandle, MinHandleLen, MaxHandleLen)
	}
	if c := local[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("%w: must start with a letter", ErrInvalidHandle)
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: only a-z, 0-9 and _ are allowed", ErrInvalidHandle)
		}
	}
	return nil
}

// ValidateDomain reports whether d is a lower-case DNS name (letters,
// digits, hyphens, dot-separated labels of 1 to 63 characters, at least two
// labels).
func ValidateDomain(d string) error {
	if d == "" || len(d) > maxDomainLen {
		return fmt.Errorf("%w: bad domain", ErrInvalidHandle)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%w: bad domain", ErrInvalidHandle)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%w: bad domain", ErrInvalidHandle)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: bad domain", ErrInvalidHandle)
			}
		}
	}
	return nil
}

// Local returns the local part ("alice").
func (h Handle) Local() string { return h.local }

// Domain returns the domain ("kez.lat").
func (h Handle) Domain() string { return h.domain }

// String returns the qualified form alice@kez.lat.
func (h Handle) String() string {
	if h.IsZero() {
		return ""
	}
	return h.local + "@" + h.domain
}

// IsZero reports whether h is the zero value.
func (h Handle) IsZero() bool { return h.local == "" }

// Skeleton returns the look-alike skeleton of the local part; see [Skeleton].
func (h Handle) Skeleton() string { return Skeleton(h.local) }

// MarshalText implements encoding.TextMarshaler (qualified form).
func (h Handle) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; the text must be
// qualified.
func (h *Handle) UnmarshalText(b []byte) error {
	if !strings.Contains(strings.TrimPrefix(string(b), "@"), "@") {
		return fmt.Errorf("%w: want a qualified handle", ErrInvalidHandle)
	}
	p, err := ParseHandle(string(b), "")
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// skeletonPairs fold characters and digraphs that read alike, applied in
// order after '_' is dropped. Digits fold to the letter they imitate, so
// "tud1sco" and "tudisco" share a skeleton.
var skeletonFold = strings.NewReplacer(
	"0", "o",
	"1", "l", "i", "l",
	"rn", "m",
	"vv", "w",
)

// Skeleton returns the look-alike skeleton of a valid local part: '_'
// dropped, then 0/o, 1/l/i, rn/m and vv/w folded together. Two handles with
// the same skeleton cannot both be registered. The result contains only a-z
// and 0-9, so it is safe as a NATS subject token.
func Skeleton(local string) string {
	s := strings.ReplaceAll(local, "_", "")
	// Replacer is one left-to-right pass; a second pass catches digraphs that
	// the first created ("r_n" is "rn" only once '_' is gone, and "vvv"
	// leaves "wv").
	for {
		n := skeletonFold.Replace(s)
		if n == s {
			return s
		}
		s = n
	}
}

// DefaultReserved are local parts no one may register: names people trust
// to speak for the operator, and names our own subjects use.
var DefaultReserved = []string{
	"abuse", "admin", "administrator", "api", "help", "hostmaster", "info",
	"kez", "mail", "moderator", "nats", "noc", "noreply", "official",
	"operator", "postmaster", "root", "security", "staff", "support",
	"sys", "system", "webmaster", "www",
}

// Reserved is a set of reserved local parts, matched by skeleton so that
// "r00t" is as reserved as "root".
type Reserved map[string]struct{}

// NewReserved returns the set of the given local parts.
func NewReserved(locals ...string) Reserved {
	r := Reserved{}
	for _, l := range locals {
		r[Skeleton(strings.ToLower(strings.TrimSpace(l)))] = struct{}{}
	}
	return r
}

// ReadReserved adds the local parts in r to the set: one per line, blank
// lines and lines starting with # ignored.
func (s Reserved) ReadReserved(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.ToLower(strings.TrimSpace(sc.Text()))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := ValidateLocal(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		s[Skeleton(line)] = struct{}{}
	}
	return sc.Err()
}

// Contains reports whether the handle's local part is reserved.
func (s Reserved) Contains(h Handle) bool {
	_, ok := s[h.Skeleton()]
	return ok
}
