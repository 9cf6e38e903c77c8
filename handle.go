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

// skeletonFold folds characters and digraphs that read alike, in one
// left-to-right pass after '_' is dropped. Digits fold to the letter they
// imitate, so "tud1sco" and "tudisco" share a skeleton.
//
// Every string of v's and w's that reads alike must fold alike: "avw",
// "avvv" and "awv" all read a-v-v-v. So w is expanded to vv rather than
// vv contracted to w: a contraction is one left-to-right choice of pairs
// and leaves odd runs ambiguous ("avvv" gave "awv" while "avw" stayed).
// "rn" contracts to "m" safely: an "rn" cannot overlap another ("nr" is
// no match), so the contraction of an r/n/m string is the same whichever
// way it is read ("rnn" and "mn" give "mn", "rrn" and "rm" give "rm").
//
// One pass is a fixed point: the replacements (o, l, m, vv) hold none of
// 0, 1, i, w, r and n, so no rule matches in the result and Skeleton
// needs no loop (a loop with an expanding rule could also never end). The
// result is at most twice the local part: 60 characters of a-z and 0-9.
var skeletonFold = strings.NewReplacer(
	"0", "o",
	"1", "l", "i", "l",
	"rn", "m",
	"w", "vv",
)

// Skeleton returns the look-alike skeleton of a valid local part: '_'
// dropped, 0/o and 1/l/i folded together, rn read as m and w as vv. Two
// handles with the same skeleton cannot both be registered. The result
// contains only a-z and 0-9, so it is safe as a NATS subject token.
func Skeleton(local string) string {
	return skeletonFold.Replace(strings.ReplaceAll(local, "_", ""))
}

// legacyFold is the fold of releases before w was expanded to vv.
var legacyFold = strings.NewReplacer(
	"0", "o",
	"1", "l", "i", "l",
	"rn", "m",
	"vv", "w",
)

// LegacySkeleton returns the skeleton that releases before the fix of the
// v/w fold computed: vv contracted to w, repeated to a fixed point. Their
// registrations claimed this skeleton; the registry reads it only to
// recognise those claims (see registry.Service.MigrateSkeletons). It
// differs from Skeleton exactly for local parts with a w or a vv (once
// '_' is dropped), and then Skeleton has a vv and LegacySkeleton none,
// so the claims of the two folds never share a subject.
func LegacySkeleton(local string) string {
	s := strings.ReplaceAll(local, "_", "")
	for {
		n := legacyFold.Replace(s)
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
