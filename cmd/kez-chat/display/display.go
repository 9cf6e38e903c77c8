// Package display turns what kez-chat shows into text for a terminal:
// text written by others made inert (no control or escape sequence
// reaches the terminal), sizes, durations and presence in words. Both
// the line commands (chatcmd) and the full-screen chat (tui) use it, so
// that the two never disagree on what is safe to print.
package display

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"kez.lat/kez"
	"kez.lat/kez/client"
)

// Text makes s, written by someone else (a message, a file name, a
// claim), safe to print on a terminal, keeping its line breaks and tabs:
// every other control character (C0, DEL, C1: the start of ESC and CSI
// sequences, OSC 52 clipboard writes, OSC 8 links, carriage returns that
// overwrite a line), every bidirectional override, embedding, isolate and
// mark (text that reads in another order than it is stored, "Trojan
// Source") and the Unicode line and paragraph separators are shown as
// \uXXXX. Invalid UTF-8 becomes U+FFFD, so no raw byte of 0x80 or more
// (an 8-bit C1 control) passes either.
func Text(s string) string { return clean(s, true) }

// Line is [Text] for text that must stay on one line (a handle, a file
// name, a preview): line breaks and tabs are shown as \u000a and \u0009
// too.
func Line(s string) string { return clean(s, false) }

func clean(s string, multiline bool) string {
	if safe(s, multiline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch {
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case Inert(r):
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// safe reports whether s needs no change (the common case, without
// allocating).
func safe(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return safeRunes(s[i:], multiline)
		}
		if !(multiline && (c == '\n' || c == '\t')) && !Inert(rune(c)) {
			return false
		}
	}
	return true
}

func safeRunes(s string, multiline bool) bool {
	for _, r := range s {
		if r == utf8.RuneError || (!(multiline && (r == '\n' || r == '\t')) && !Inert(r)) {
			return false
		}
	}
	return true
}

// Inert reports whether r prints as itself on a terminal: it is not a
// control character, nor a bidirectional formatting character, nor a
// line or paragraph separator.
func Inert(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return false // C0, DEL, C1
	case r == 0x061c, r == 0x200e, r == 0x200f: // arabic letter mark, LRM, RLM
		return false
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return false
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return false
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return false
	}
	return true
}

// JSON returns the JSON text b with every character that is not [Inert]
// written as a \uXXXX escape: encoding/json escapes the C0 controls but
// leaves DEL, the C1 controls (0x9b starts a control sequence on many
// terminals) and the bidirectional controls raw, and --json output is
// often read on a terminal. Those characters can only stand inside JSON
// strings, where the escape means the same; b is returned if it has none.
func JSON(b []byte) []byte {
	if s := string(b); !safe(s, true) {
		return []byte(clean(s, true))
	}
	return b
}

// Size reads a byte count as "3.1 MiB".
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Ago reads a duration as "5 minutes ago".
func Ago(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s ago", name)
		}
		return fmt.Sprintf("%d %ss ago", n, name)
	}
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return unit(int64(d/time.Second), "second")
	case d < time.Hour:
		return unit(int64(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return unit(int64(d/time.Hour), "hour")
	}
	return unit(int64(d/(24*time.Hour)), "day")
}

// Presence is how a presence reads at now: "online", "last seen 5
// minutes ago", "not seen (never announced, or invisible)".
func Presence(p client.Presence, now time.Time) string {
	switch p.State {
	case client.PresenceOnline:
		return "online"
	case client.PresenceOffline:
		return "last seen " + Ago(now.Sub(time.Unix(p.LastSeen, 0)))
	}
	return "not seen (never announced, or invisible)"
}

// Handle returns h as kez-chat shows it to a user of domain home:
// @name at home, @name@domain elsewhere.
func Handle(home string, h kez.Handle) string {
	if h.Domain() == home {
		return "@" + h.Local()
	}
	return "@" + h.String()
}
