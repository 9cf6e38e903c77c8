package share_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/keztest"
	"kez.lat/kez/message"
	"kez.lat/kez/share"
)

var testAddrs = []string{
	"/ip4/203.0.113.7/tcp/4001",
	"/ip6/2001:db8::7/udp/4001/quic-v1",
	"/dns4/relay.kez.lat/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
}

// announce returns alice's announcement of a small file to bob, the
// stream, and the content key.
func announce(tb testing.TB) (share.Announcement, []byte, filecrypt.Key) {
	tb.Helper()
	alice, bob := keztest.SeedKey(tb, 0x00), keztest.SeedKey(tb, 0x20)
	k := testKey(tb, 0x42)
	stream, f := encryptFile(tb, k, []byte("hello, bob\n"), "notes <draft> & \"final\".txt", "text/plain; charset=utf-8")
	a, err := share.NewAnnouncement(alice, bob.Public(), f, k, testAddrs, &seqReader{next: 0x80})
	if err != nil {
		tb.Fatal(err)
	}
	return a, stream, k
}

func TestAnnouncementRoundTrip(t *testing.T) {
	alice, bob := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20)
	a, stream, k := announce(t)

	// Through a real chat message, as `kez-chat share` sends it.
	pt, err := a.Plaintext()
	if err != nil {
		t.Fatal(err)
	}
	if pt.Type() != message.TypeFileShare || !pt.Known() {
		t.Fatalf("plaintext type %q", pt.Type())
	}
	aliceID, bobID := message.NewIdentity(alice), message.NewIdentity(bob)
	defer aliceID.Close()
	defer bobID.Close()
	_, wire, err := message.Seal(aliceID, bob.Public(), pt, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := message.Parse(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Open(bobID, alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	b, err := share.ParseAnnouncement(got.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Equal(a) {
		t.Fatalf("ParseAnnouncement = %+v, want %+v", b, a)
	}
	m, _ := a.Marshal()
	if m2, _ := b.Marshal(); !bytes.Equal(m, m2) {
		t.Fatalf("re-marshal differs:\n%s\n%s", m, m2)
	}
	if !strings.Contains(string(m), `"name":"notes <draft> & \"final\".txt"`) {
		t.Errorf("name not written as expected: %s", m)
	}

	key, err := b.ContentKey(bob, alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(k) {
		t.Fatal("unwrapped key differs")
	}
	if got := decryptFile(t, key, stream); string(got) != "hello, bob\n" {
		t.Fatalf("decrypted %q", got)
	}
}

func TestAnnouncementNoAddrs(t *testing.T) {
	alice, bob := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20)
	k := testKey(t, 1)
	_, f := encryptFile(t, k, nil, "empty", "")
	a, err := share.NewAnnouncement(alice, bob.Public(), f, k, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"addrs":[]`)) || bytes.Contains(raw, []byte(`"mime"`)) {
		t.Errorf("Marshal = %s", raw)
	}
	b, err := share.ParseAnnouncement(raw)
	if err != nil || !b.Equal(a) || b.Addrs != nil {
		t.Fatalf("ParseAnnouncement = %+v, %v", b, err)
	}
}

func TestContentKeyWrongParties(t *testing.T) {
	alice, bob, carol := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20), keztest.SeedKey(t, 0x40)
	a, _, _ := announce(t)
	tests := []struct {
		name     string
		me       *kez.PrivateKey
		from     kez.PublicKey
		mutate   func(*share.Announcement)
		wantBoth []error
	}{
		{"wrong sender key", bob, carol.Public(), nil, []error{share.ErrDecrypt, message.ErrDecrypt}},
		{"wrong recipient", carol, alice.Public(), nil, []error{share.ErrDecrypt}},
		{"sender reads own wrap for bob", alice, alice.Public(), nil, []error{share.ErrDecrypt}},
		{"other blob", bob, alice.Public(), func(a *share.Announcement) { a.Blob[0] ^= 1 }, []error{share.ErrDecrypt}},
		{"tampered key", bob, alice.Public(), func(a *share.Announcement) { a.WrappedKey[40] ^= 1 }, []error{share.ErrDecrypt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := a
			b.WrappedKey = bytes.Clone(a.WrappedKey)
			if tt.mutate != nil {
				tt.mutate(&b)
			}
			k, err := b.ContentKey(tt.me, tt.from)
			for _, w := range tt.wantBoth {
				if !errors.Is(err, w) {
					t.Errorf("ContentKey: %v, want %v", err, w)
				}
			}
			if !k.IsZero() {
				t.Error("a key came back with the error")
			}
		})
	}
}

// field replaces (or with value "" removes) one member of the canonical
// announcement JSON.
func field(tb testing.TB, raw []byte, name, value string) []byte {
	tb.Helper()
	s := string(raw)
	i := strings.Index(s, `"`+name+`":`)
	if i < 0 {
		tb.Fatalf("no field %q", name)
	}
	j := i + len(name) + 3
	depth, inStr := 0, false
	for ; j < len(s); j++ {
		c := s[j]
		if inStr {
			if c == '\\' {
				j++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
		} else if c == '[' || c == '{' {
			depth++
		} else if c == ']' || c == '}' {
			if depth == 0 {
				break
			}
			depth--
		} else if c == ',' && depth == 0 {
			break
		}
	}
	if value == "" {
		if s[j] == ',' {
			j++
		} else if s[i-1] == ',' {
			i--
		}
		return []byte(s[:i] + s[j:])
	}
	return []byte(s[:i] + `"` + name + `":` + value + s[j:])
}

func TestParseAnnouncementRejects(t *testing.T) {
	a, _, _ := announce(t)
	good, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := share.ParseAnnouncement(good); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(a.WrappedKey)
	many := make([]string, share.MaxAddrs+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"/ip4/203.0.113.%d/tcp/4001"`, i)
	}
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"not JSON", []byte(`{"type":"file_share"`), share.ErrMalformed},
		{"array", []byte(`[]`), share.ErrMalformed},
		{"trailing data", append(bytes.Clone(good), " {}"...), share.ErrMalformed},
		{"invalid UTF-8", field(t, good, "name", "\"a\xffb\""), share.ErrMalformed},
		{"oversize", append(bytes.Clone(good), bytes.Repeat([]byte(" "), share.MaxAnnouncementSize)...), share.ErrTooLarge},
		{"text type", field(t, good, "type", `"text"`), share.ErrMalformed},
		{"v 2", field(t, good, "v", `2`), share.ErrVersion},
		{"v 0", field(t, good, "v", `0`), share.ErrVersion},
		{"v string", field(t, good, "v", `"1"`), share.ErrMalformed},
		{"v 1.0", field(t, good, "v", `1.0`), share.ErrMalformed},
		{"no v", field(t, good, "v", ``), share.ErrMalformed},
		{"unknown field", field(t, good, "v", `1,"peer_id":"12D3KooW"`), share.ErrMalformed},
		{"repeated field", field(t, good, "v", `1,"v":1`), share.ErrMalformed},
		{"field case", []byte(strings.Replace(string(good), `"blob"`, `"Blob"`, 1)), share.ErrMalformed},
		{"hash upper case", field(t, good, "blob", `"`+strings.ToUpper(a.Blob.String())+`"`), share.ErrMalformed},
		{"hash short", field(t, good, "blob", `"`+a.Blob.String()[2:]+`"`), share.ErrMalformed},
		{"hash not hex", field(t, good, "blob", `"`+strings.Repeat("g", 64)+`"`), share.ErrMalformed},
		{"size mismatch", field(t, good, "file_size", fmt.Sprint(a.FileSize+1)), share.ErrFileSize},
		{"impossible size", field(t, field(t, good, "size", `43`), "file_size", `0`), share.ErrFileSize},
		{"size negative", field(t, good, "size", `-1`), share.ErrMalformed},
		{"size over 2^53", field(t, good, "size", `9007199254740992`), share.ErrMalformed},
		{"size leading zero", field(t, good, "size", fmt.Sprintf("0%d", a.Size)), share.ErrMalformed},
		{"shared_at exponent", field(t, good, "shared_at", `1e9`), share.ErrMalformed},
		{"name empty", field(t, good, "name", `""`), share.ErrName},
		{"name slash", field(t, good, "name", `"../../.bashrc"`), share.ErrName},
		{"name absolute", field(t, good, "name", `"/etc/passwd"`), share.ErrName},
		{"name backslash", field(t, good, "name", `"..\\..\\x.exe"`), share.ErrName},
		{"name dot", field(t, good, "name", `"."`), share.ErrName},
		{"name dotdot", field(t, good, "name", `".."`), share.ErrName},
		{"name NUL", field(t, good, "name", `"a\u0000b"`), share.ErrName},
		{"name newline", field(t, good, "name", `"a\nb"`), share.ErrName},
		{"name bidi", field(t, good, "name", `"invoice\u202etxt.exe"`), share.ErrName},
		{"name drive", field(t, good, "name", `"C:x"`), share.ErrName},
		{"name trailing space", field(t, good, "name", `".. "`), share.ErrName},
		{"name too long", field(t, good, "name", `"`+strings.Repeat("é", 128)+`"`), share.ErrName},
		{"name number", field(t, good, "name", `7`), share.ErrMalformed},
		{"mime empty", field(t, good, "mime", `""`), share.ErrMalformed},
		{"mime bad", field(t, good, "mime", `"not a type"`), share.ErrMalformed},
		{"key short", field(t, good, "key", `"`+key[:len(key)-4]+`"`), share.ErrMalformed},
		{"key url alphabet", field(t, good, "key", `"`+strings.NewReplacer("+", "-", "/", "_").Replace(key)+`"`), share.ErrMalformed},
		{"key no padding", field(t, good, "key", `"`+base64.RawStdEncoding.EncodeToString(a.WrappedKey[:79])+`"`), share.ErrMalformed},
		{"key raw content key", field(t, good, "key", `"`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"`), share.ErrMalformed},
		{"no addrs", field(t, good, "addrs", ``), share.ErrMalformed},
		{"addrs null", field(t, good, "addrs", `null`), share.ErrMalformed},
		{"addrs string", field(t, good, "addrs", `"/ip4/1.2.3.4/tcp/1"`), share.ErrMalformed},
		{"addrs number", field(t, good, "addrs", `[1]`), share.ErrMalformed},
		{"too many addrs", field(t, good, "addrs", `[`+strings.Join(many, ",")+`]`), share.ErrAddr},
		{"addr not multiaddr", field(t, good, "addrs", `["203.0.113.7:4001"]`), share.ErrAddr},
		{"addr unknown protocol", field(t, good, "addrs", `["/ip4/203.0.113.7/tcp/4001/nope"]`), share.ErrAddr},
		{"addr non-canonical", field(t, good, "addrs", `["/ip4/203.0.113.7/tcp/04001"]`), share.ErrAddr},
		{"addr unix", field(t, good, "addrs", `["/unix/tmp/sock"]`), share.ErrAddr},
		{"addr ends in p2p", field(t, good, "addrs", `["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]`), share.ErrAddr},
		{"addr too long", field(t, good, "addrs", `["/dns4/`+strings.Repeat("a", share.MaxAddrLen)+`/tcp/1"]`), share.ErrAddr},
		{"addr repeated", field(t, good, "addrs", `["/ip4/203.0.113.7/tcp/4001","/ip4/203.0.113.7/tcp/4001"]`), share.ErrAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := share.ParseAnnouncement(tt.raw)
			if !errors.Is(err, tt.want) || !errors.Is(err, share.ErrMalformed) {
				t.Fatalf("ParseAnnouncement(%.120q) = %v, want %v", tt.raw, err, tt.want)
			}
			if !got.Equal(share.Announcement{}) {
				t.Error("non-zero announcement with the error")
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), key[:16]) {
				t.Error("error quotes the wrapped key")
			}
		})
	}
}

func TestParseAnnouncementAcceptsSpelling(t *testing.T) {
	a, _, _ := announce(t)
	good, _ := a.Marshal()
	// Member order and white space are free for readers.
	spaced := strings.ReplaceAll(strings.ReplaceAll(string(good), `,"`, ",\n  \""), `":`, `" : `)
	reordered := field(t, field(t, good, "type", ""), "shared_at", fmt.Sprintf(`%d,"type":"file_share"`, a.SharedAt))
	for _, raw := range [][]byte{[]byte(" " + spaced + "\n"), reordered} {
		b, err := share.ParseAnnouncement(raw)
		if err != nil || !b.Equal(a) {
			t.Errorf("ParseAnnouncement(%q) = %v", raw, err)
		}
	}
}

func TestNewAnnouncementRejects(t *testing.T) {
	alice, bob := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20)
	k := testKey(t, 0x42)
	_, f := encryptFile(t, k, []byte("x"), "x", "")
	bad := func(mut func(*share.File)) share.File { g := f; mut(&g); return g }
	tests := []struct {
		name  string
		f     share.File
		k     filecrypt.Key
		addrs []string
		to    kez.PublicKey
		want  error
	}{
		{"path name", bad(func(f *share.File) { f.Name = "a/b" }), k, nil, bob.Public(), share.ErrName},
		{"file size", bad(func(f *share.File) { f.FileSize = 2 }), k, nil, bob.Public(), share.ErrFileSize},
		{"negative time", bad(func(f *share.File) { f.SharedAt = -1 }), k, nil, bob.Public(), share.ErrMalformed},
		{"zero key", f, filecrypt.Key{}, nil, bob.Public(), share.ErrMalformed},
		{"bad addr", f, k, []string{"/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}, bob.Public(), share.ErrAddr},
		{"zero recipient", f, k, nil, kez.PublicKey{}, kez.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := share.NewAnnouncement(alice, tt.to, tt.f, tt.k, tt.addrs, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewAnnouncement = %v, want %v", err, tt.want)
			}
		})
	}
	var a share.Announcement
	if _, err := a.Marshal(); !errors.Is(err, share.ErrMalformed) {
		t.Errorf("zero Announcement.Marshal = %v", err)
	}
}

func TestFileJSON(t *testing.T) {
	a, _, _ := announce(t)
	b, err := json.Marshal(a.File)
	if err != nil {
		t.Fatal(err)
	}
	var back share.File
	if err := json.Unmarshal(b, &back); err != nil || back != a.File {
		t.Fatalf("round trip of %s: %+v, %v", b, back, err)
	}
	bad := strings.Replace(string(b), `"name":"`, `"name":"../`, 1)
	if err := json.Unmarshal([]byte(bad), &back); !errors.Is(err, share.ErrName) {
		t.Fatalf("a path as name: %v, want ErrName", err)
	}
	if err := json.Unmarshal([]byte(strings.Replace(string(b), "{", `{"extra":1,`, 1)), &back); !errors.Is(err, share.ErrMalformed) {
		t.Fatalf("an unknown field: %v, want ErrMalformed", err)
	}
}
