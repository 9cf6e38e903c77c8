package chatcmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"hello", "hello"},
		{"tab\there", "tab\there"},
		{"\x1b]0;pwned\x07", `\u001b]0;pwned\u0007`},
		{"a\n2026-01-01 00:00:00 @bank: send money", "a\n    2026-01-01 00:00:00 @bank: send money"},
		{"c1\u009bm", `c1\u009bm`},
		{"ünïcode ok", "ünïcode ok"},
	} {
		if got := sanitize(tt.in); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestExitSanitizes: an error quoting a hostile server's or broker's
// words reaches the terminal without its escape sequences.
func TestExitSanitizes(t *testing.T) {
	var out bytes.Buffer
	if code := Exit(errors.New("nats: expected 'PONG', got '\x1b]0;owned\a'"), &out); code != ExitError {
		t.Errorf("exit code %d", code)
	}
	if s := out.String(); strings.ContainsAny(s, "\x1b\a") || !strings.Contains(s, `\u001b]0;owned\u0007`) {
		t.Errorf("printed %q", s)
	}
}

// TestErrfSanitizes: notes and warnings, which quote servers, peers and
// the broker, reach the terminal without escape sequences.
func TestErrfSanitizes(t *testing.T) {
	var out bytes.Buffer
	a := &app{errw: &out}
	a.errf("kez-chat: note: presence unavailable: %v\n", errors.New("\x1b[2J\x9b31m"))
	if s := out.String(); strings.ContainsAny(s, "\x1b\u009b") || !strings.HasSuffix(s, "\n") {
		t.Errorf("printed %q", s)
	}
}
