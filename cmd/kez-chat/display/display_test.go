package display_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
)

func TestText(t *testing.T) {
	for _, tt := range []struct{ in, text, line string }{
		{"hello", "hello", "hello"},
		{"tab\there", "tab\there", `tab\u0009here`},
		{"two\nlines", "two\nlines", `two\u000alines`},
		{"\x1b[2J\x1b[H", `\u001b[2J\u001b[H`, `\u001b[2J\u001b[H`},
		{"\x1b]0;pwned\x07", `\u001b]0;pwned\u0007`, `\u001b]0;pwned\u0007`},
		{"\x1b]52;c;aGk=\x1b\\", `\u001b]52;c;aGk=\u001b\`, `\u001b]52;c;aGk=\u001b\`},
		{"\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", `\u001b]8;;http://evil\u001b\click\u001b]8;;\u001b\`, `\u001b]8;;http://evil\u001b\click\u001b]8;;\u001b\`},
		{"over\rwrite", `over\u000dwrite`, `over\u000dwrite`},
		{"c1\u009bm", `c1\u009bm`, `c1\u009bm`},
		{"raw c1 \x9b2J", "raw c1 \ufffd2J", "raw c1 \ufffd2J"},
		{"bidi \u202eevil\u202c \u2066x\u2069", `bidi \u202eevil\u202c \u2066x\u2069`, `bidi \u202eevil\u202c \u2066x\u2069`},
		{"sep\u2028x", `sep\u2028x`, `sep\u2028x`},
		{"ünïcode ok, 漢字 🎉", "ünïcode ok, 漢字 🎉", "ünïcode ok, 漢字 🎉"},
	} {
		if got := display.Text(tt.in); got != tt.text {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.text)
		}
		if got := display.Line(tt.in); got != tt.line {
			t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.line)
		}
	}
}

// FuzzText checks that nothing in any input survives that could drive a
// terminal: the output is valid UTF-8 of inert runes (plus line breaks
// and tabs for Text), and Line's is one line.
func FuzzText(f *testing.F) {
	for _, s := range []string{"hello", "\x1b[31mred", "\x1b]52;c;aGk=\x07", "\u202e", "\xff\x9b", "a\nb\tc\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, out := range map[string]string{"Text": display.Text(s), "Line": display.Line(s)} {
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%q) = %q: invalid UTF-8", name, s, out)
			}
			for _, r := range out {
				if r == utf8.RuneError && !strings.Contains(s, "\ufffd") && utf8.ValidString(s) {
					t.Fatalf("%s(%q) = %q: U+FFFD from valid input", name, s, out)
				}
				if display.Inert(r) || (name == "Text" && (r == '\n' || r == '\t')) {
					continue
				}
				t.Fatalf("%s(%q) = %q: passes %U", name, s, out, r)
			}
		}
		if utf8.ValidString(s) {
			ok := true
			for _, r := range s {
				ok = ok && display.Inert(r)
			}
			if ok && display.Line(s) != s {
				t.Fatalf("Line(%q) = %q: changed inert text", s, display.Line(s))
			}
		}
	})
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := display.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPresence(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tt := range []struct {
		p    client.Presence
		want string
	}{
		{client.Presence{State: client.PresenceOnline}, "online"},
		{client.Presence{State: client.PresenceOffline, LastSeen: now.Add(-5 * time.Minute).Unix()}, "last seen 5 minutes ago"},
		{client.Presence{State: client.PresenceOffline, LastSeen: now.Add(-72 * time.Hour).Unix()}, "last seen 3 days ago"},
		{client.Presence{State: client.PresenceUnknown}, "not seen (never announced, or invisible)"},
	} {
		if got := display.Presence(tt.p, now); got != tt.want {
			t.Errorf("Presence(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestJSON: what encoding/json leaves raw that a terminal acts on is
// escaped, and the result is the same JSON.
func TestJSON(t *testing.T) {
	in := map[string]string{"body": "a\u009b2J\u202eb\x1b\x7fc\u00e9\u4e16", "ok": "plain"}
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := display.JSON(b)
	for _, r := range string(out) {
		if !display.Inert(r) && r != '\n' {
			t.Fatalf("JSON left %U raw in %s", r, out)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil || back["body"] != in["body"] || back["ok"] != in["ok"] {
		t.Fatalf("JSON(%s) = %s: decodes to %q, %v", b, out, back, err)
	}
	if plain := []byte(`{"a": "b"}`); &display.JSON(plain)[0] != &plain[0] {
		t.Error("a JSON text with nothing to escape was copied")
	}
}
