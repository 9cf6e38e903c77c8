package share_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"kez.lat/kez/share"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"notes.txt", true},
		{".bashrc", true},
		{"a b", true},
		{"photo (1).jpg", true},
		{"Ünïcödé 文件 🎉.pdf", true},
		{`a"b<c>|?*`, true},
		{strings.Repeat("a", share.MaxNameLen), true},
		{strings.Repeat("a", share.MaxNameLen+1), false},
		{strings.Repeat("é", 127) + "a", true}, // 255 bytes
		{"", false},
		{".", false},
		{"..", false},
		{"...", false},
		{".. ", false},
		{"a.", false},
		{"a ", false},
		{"a/b", false},
		{"/", false},
		{`a\b`, false},
		{"C:", false},
		{"a:stream", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"a\u2028b", false},
		{"evil\u202egpj.exe", false},
		{"a\u2066b", false},
		{"a\u200fb", false},
		{"a\xffb", false},
	}
	for _, tt := range tests {
		err := share.CheckName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, share.ErrName) || !errors.Is(err, share.ErrMalformed)) {
			t.Errorf("CheckName(%q) = %v, not ErrName", tt.name, err)
		}
		if err == nil && !filepath.IsLocal(tt.name) {
			t.Errorf("CheckName(%q) accepted a name filepath.IsLocal refuses", tt.name)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct{ in, want string }{
		{"notes.txt", "notes.txt"},
		{"", "file"},
		{".", "file"},
		{"..", "file"},
		{"...  ", "file"},
		{"a/b\\c:d", "a_b_c_d"},
		{"report.", "report"},
		{"a\nb\x00c", "a_b_c"},
		{"a\xffb", "a_b"},
		{"evil\u202egpj.exe", "evil_gpj.exe"},
		{long + ".tar.gz", long[:252] + ".gz"},
		{long, long[:255]},
		{strings.Repeat("é", 200), strings.Repeat("é", 127)},
		{long + "." + strings.Repeat("e", 20), (long + "." + strings.Repeat("e", 20))[:255]},
	}
	for _, tt := range tests {
		got := share.SanitizeName(tt.in)
		if got != tt.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if err := share.CheckName(got); err != nil {
			t.Errorf("CheckName(SanitizeName(%q)) = %v", tt.in, err)
		}
	}
}

func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{"notes.txt", "..", "a/b", "evil\u202egpj.exe", strings.Repeat("é", 200) + ".jpeg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := share.SanitizeName(s)
		if err := share.CheckName(got); err != nil {
			t.Fatalf("SanitizeName(%q) = %q, which CheckName refuses: %v", s, got, err)
		}
		if !filepath.IsLocal(got) || !utf8.ValidString(got) {
			t.Fatalf("SanitizeName(%q) = %q, not a local name", s, got)
		}
		// A name that is already acceptable is kept as it is.
		if share.CheckName(s) == nil && got != s {
			t.Fatalf("SanitizeName(%q) = %q, changed an acceptable name", s, got)
		}
	})
}

func TestCheckAddr(t *testing.T) {
	const relay = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	tests := []struct {
		addr string
		ok   bool
	}{
		{"/ip4/203.0.113.7/tcp/4001", true},
		{"/ip4/127.0.0.1/udp/4001/quic-v1", true},
		{"/ip6/2001:db8::7/udp/4001/quic-v1", true},
		{"/dns/relay.kez.lat/tcp/4001/p2p/" + relay + "/p2p-circuit", true},
		{"/dns6/relay.kez.lat/udp/4001/quic-v1/p2p/" + relay + "/p2p-circuit", true},
		{"", false},
		{"/", false},
		{"/ip4/203.0.113.7/tcp/4001/", false},
		{"/ip4/203.0.113.7/tcp/70000", false},
		{"/ip4/203.0.113.07/tcp/4001", false},
		{"/ip6/2001:DB8::7/udp/4001/quic-v1", false},
		{"/tcp/4001", false},
		{"/unix/tmp/kez.sock", false},
		{"/p2p/" + relay, false},
		{"/ip4/203.0.113.7/tcp/4001/p2p/" + relay, false},
		{"/ip4/203.0.113.9/tcp/4001/p2p/" + relay + "/p2p-circuit/p2p/" + relay, false},
		{"/ip4/203.0.113.7/tcp/4001/p2p/notapeerid", false},
		{"/ip4/203.0.113.7 /tcp/4001", false},
	}
	for _, tt := range tests {
		err := share.CheckAddr(tt.addr)
		if (err == nil) != tt.ok {
			t.Errorf("CheckAddr(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, share.ErrAddr) {
			t.Errorf("CheckAddr(%q) = %v, not ErrAddr", tt.addr, err)
		}
	}
}
