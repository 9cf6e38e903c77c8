package chatcmd

import "testing"

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
