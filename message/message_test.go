package message_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// testKey returns the identity of a fixed key pair for name, closed at
// the end of the test.
func testKey(t testing.TB, name string) *message.Identity {
	t.Helper()
	seed := sha256.Sum256([]byte("kez-msg-v1 test " + name))
	k, err := kez.NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	id := message.NewIdentity(k)
	t.Cleanup(id.Close)
	return id
}

var now = time.Unix(1767225600, 0)

func seal(t testing.TB, from *message.Identity, to kez.PublicKey, pt message.Plaintext) (message.Envelope, []byte) {
	t.Helper()
	e, wire, err := message.Seal(from, to, pt, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, wire
}

func TestRoundTrip(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	for _, body := range []string{"hello, bob", "", "héllo <b>&amp;</b> \"q\"\n\x00😀", strings.Repeat("x", 40000)} {
		e, wire := seal(t, alice, bob.Public(), message.Text(body))
		if !json.Valid(wire) {
			t.Fatalf("wire is not JSON: %s", wire)
		}
		got, err := message.Parse(wire)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if again, _ := got.Marshal(); !bytes.Equal(again, wire) {
			t.Errorf("Parse(wire).Marshal() differs from wire")
		}
		if !got.From.Equal(alice.Public()) || !got.To.Equal(bob.Public()) || got.ID != e.ID || !got.Time().Equal(now) {
			t.Errorf("parsed envelope %+v differs from sealed %+v", got, e)
		}
		pt, err := got.Open(bob, alice.Public())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if pt.Type() != message.TypeText || pt.Body() != body || !pt.Known() {
			t.Errorf("Open = %q %q, want text %q", pt.Type(), pt.Body(), body)
		}
	}
	// Notes to self work too.
	_, wire := seal(t, alice, alice.Public(), message.Text("note"))
	e, _ := message.Parse(wire)
	if pt, err := e.Open(alice, alice.Public()); err != nil || pt.Body() != "note" {
		t.Errorf("note to self: %q, %v", pt.Body(), err)
	}
}

func TestFreshIDAndSalt(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	e1, w1 := seal(t, alice, bob.Public(), message.Text("same"))
	e2, w2 := seal(t, alice, bob.Public(), message.Text("same"))
	if e1.ID == e2.ID || e1.Salt == e2.Salt || bytes.Equal(e1.Ciphertext, e2.Ciphertext) || bytes.Equal(w1, w2) {
		t.Error("two seals of the same plaintext share an id, salt or ciphertext")
	}
	if e1.DedupKey() == e2.DedupKey() {
		t.Error("same dedup key for two messages")
	}
	if k := e1.DedupKey(); len(k) != 64+1+32 || !strings.HasPrefix(k, alice.Public().Hex()+"-") {
		t.Errorf("DedupKey = %q", k)
	}
}

// mutate re-encodes the JSON wire form with field set to value (raw JSON).
func mutate(t testing.TB, wire []byte, field, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(wire, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = json.RawMessage(value)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return strconv.Quote(base64.StdEncoding.EncodeToString(b)) }

func TestTamper(t *testing.T) {
	alice, bob, carol := testKey(t, "alice"), testKey(t, "bob"), testKey(t, "carol")
	e, wire := seal(t, alice, bob.Public(), message.Text("pay carol 10"))
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	id := e.ID
	id[0] ^= 1
	salt := e.Salt
	salt[31] ^= 0x80
	tests := []struct {
		field, value string
		pinned       kez.PublicKey
		want         error
	}{
		{"id", b64(id[:]), alice.Public(), kez.ErrBadSignature},
		{"from", strconv.Quote(carol.Public().String()), alice.Public(), message.ErrSenderMismatch},
		{"from", strconv.Quote(carol.Public().String()), carol.Public(), kez.ErrBadSignature},
		{"to", strconv.Quote(carol.Public().String()), alice.Public(), message.ErrNotForMe},
		{"ts", strconv.FormatInt(e.Timestamp+1, 10), alice.Public(), kez.ErrBadSignature},
		{"ts", "0", alice.Public(), kez.ErrBadSignature},
		{"salt", b64(salt[:]), alice.Public(), kez.ErrBadSignature},
		{"ct", b64(flip(e.Ciphertext, 0)), alice.Public(), kez.ErrBadSignature},
		{"ct", b64(flip(e.Ciphertext, len(e.Ciphertext)-1)), alice.Public(), kez.ErrBadSignature},
		{"ct", b64(e.Ciphertext[:len(e.Ciphertext)-1]), alice.Public(), kez.ErrBadSignature},
		{"ct", b64(append(bytes.Clone(e.Ciphertext), 0)), alice.Public(), kez.ErrBadSignature},
		{"sig", b64(flip(e.Sig[:], 0)), alice.Public(), kez.ErrBadSignature},
		{"sig", b64(flip(e.Sig[:], 63)), alice.Public(), kez.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.value[:min(len(tt.value), 12)], func(t *testing.T) {
			w := mutate(t, wire, tt.field, tt.value)
			got, err := message.Parse(w)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			pt, err := got.Open(bob, tt.pinned)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
			if !pt.IsZero() {
				t.Error("plaintext returned with an error")
			}
		})
	}
	// The untouched envelope still opens: the table above changed copies.
	if _, err := e.Open(bob, alice.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestWrongRecipient(t *testing.T) {
	alice, bob, carol := testKey(t, "alice"), testKey(t, "bob"), testKey(t, "carol")
	e, _ := seal(t, alice, bob.Public(), message.Text("for bob"))
	if _, err := e.Open(carol, alice.Public()); !errors.Is(err, message.ErrNotForMe) {
		t.Errorf("carol opens bob's message: %v, want ErrNotForMe", err)
	}
	// Even if carol claims to be bob (rewrites "to"), she cannot read it.
	e.To = carol.Public()
	if _, err := e.Open(carol, alice.Public()); !errors.Is(err, kez.ErrBadSignature) {
		t.Errorf("readdressed: %v, want ErrBadSignature", err)
	}
}

func TestSenderMismatch(t *testing.T) {
	alice, bob, mallory := testKey(t, "alice"), testKey(t, "bob"), testKey(t, "mallory")
	e, _ := seal(t, mallory, bob.Public(), message.Text("hi, it's alice"))
	if _, err := e.Open(bob, alice.Public()); !errors.Is(err, message.ErrSenderMismatch) {
		t.Errorf("Open = %v, want ErrSenderMismatch", err)
	}
	if _, err := e.Open(bob, kez.PublicKey{}); !errors.Is(err, message.ErrSenderMismatch) {
		t.Errorf("Open with zero pinned key = %v, want ErrSenderMismatch", err)
	}
	// Mallory signs a message that claims alice as sender.
	e.From = alice.Public()
	if _, err := e.Open(bob, alice.Public()); !errors.Is(err, kez.ErrBadSignature) {
		t.Errorf("Open = %v, want ErrBadSignature", err)
	}
}

func TestUnknownTypePreserved(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	raw := []byte(`{"type":"reaction","emoji":"👍","body":{"not":"text"},"extra":[1,2,3]}`)
	pt, err := message.NewPlaintext(raw)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := seal(t, alice, bob.Public(), pt)
	got, err := e.Open(bob, alice.Public())
	if err != nil {
		t.Fatalf("Open = %v, want the unknown type delivered", err)
	}
	if got.Type() != "reaction" || got.Known() || got.Body() != "" || !bytes.Equal(got.Raw(), raw) {
		t.Errorf("got type %q known %v body %q raw %s", got.Type(), got.Known(), got.Body(), got.Raw())
	}
	// Extra fields of a known type survive too.
	raw = []byte(`{"type":"text","body":"hi","reply_to":"abc"}`)
	pt, _ = message.NewPlaintext(raw)
	e, _ = seal(t, alice, bob.Public(), pt)
	if got, err := e.Open(bob, alice.Public()); err != nil || got.Body() != "hi" || !bytes.Equal(got.Raw(), raw) {
		t.Errorf("text with extra field: %s, %v", got.Raw(), err)
	}
}

func TestNewPlaintext(t *testing.T) {
	tests := []struct {
		raw string
		ok  bool
	}{
		{`{"type":"text","body":"x"}`, true},
		{` {"body":"x", "type":"text"} `, true},
		{`{"type":"file_share","blob":"..."}`, true},
		{`{"type":"future"}`, true},
		{`{"type":"text"}`, false},
		{`{"type":"text","body":1}`, false},
		{`{"type":"","body":"x"}`, false},
		{`{"type":1}`, false},
		{`{"body":"x"}`, false},
		{`{"type":"text","body":"x","type":"evil"}`, false},
		{`{"type":"text","body":"x","body":"y"}`, false},
		{`{"type":"text","body":"x"}{}`, false},
		{`{"type":"text","body":"x"`, false},
		{`["type","text"]`, false},
		{`"text"`, false},
		{``, false},
		{`null`, false},
	}
	for _, tt := range tests {
		_, err := message.NewPlaintext([]byte(tt.raw))
		if (err == nil) != tt.ok {
			t.Errorf("NewPlaintext(%s) = %v, want ok=%v", tt.raw, err, tt.ok)
		}
		if err != nil && !errors.Is(err, message.ErrMalformed) {
			t.Errorf("NewPlaintext(%s) = %v, want ErrMalformed", tt.raw, err)
		}
	}
	// Case variants are other members, not "type": encoding/json would
	// have matched "TYPE" to a field named type.
	p, err := message.NewPlaintext([]byte(`{"type":"text","body":"x","TYPE":"evil","Body":"y"}`))
	if err != nil || p.Type() != "text" || p.Body() != "x" {
		t.Errorf("case variants: %q %q %v", p.Type(), p.Body(), err)
	}
}

func TestSealErrors(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	if _, _, err := message.Seal(alice, bob.Public(), message.Plaintext{}, now, nil); !errors.Is(err, message.ErrMalformed) {
		t.Errorf("zero plaintext: %v", err)
	}
	if _, _, err := message.Seal(alice, kez.PublicKey{}, message.Text("x"), now, nil); !errors.Is(err, kez.ErrInvalidKey) {
		t.Errorf("zero recipient: %v", err)
	}
	if _, _, err := message.Seal(alice, bob.Public(), message.Text("x"), time.Unix(-1, 0), nil); !errors.Is(err, message.ErrMalformed) {
		t.Errorf("negative time: %v", err)
	}
	if _, _, err := message.Seal(alice, bob.Public(), message.Text("x"), now, strings.NewReader("short")); err == nil {
		t.Error("short random reader: no error")
	}
	// The largest text that fits: binary search for the limit.
	lo, hi := 1000, 70000 // lo fits, hi does not
	for hi-lo > 1 {
		n := (lo + hi) / 2
		_, _, err := message.Seal(alice, bob.Public(), message.Text(strings.Repeat("a", n)), now, nil)
		switch {
		case err == nil:
			lo = n
		case errors.Is(err, message.ErrTooLarge):
			hi = n
		default:
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	fits := lo
	w := mustWire(t, alice, bob, strings.Repeat("a", fits))
	if len(w) > message.MaxSize || len(w) < message.MaxSize-4 {
		t.Errorf("largest message is %d bytes, MaxSize %d", len(w), message.MaxSize)
	}
	if _, err := message.Parse(w); err != nil {
		t.Errorf("Parse(largest) = %v", err)
	}
	if _, _, err := message.Seal(alice, bob.Public(), message.Text(strings.Repeat("a", 1<<20)), now, nil); !errors.Is(err, message.ErrTooLarge) {
		t.Errorf("1 MiB: %v", err)
	}
}

func mustWire(t *testing.T, from, to *message.Identity, body string) []byte {
	t.Helper()
	_, w, err := message.Seal(from, to.Public(), message.Text(body), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestParseStrict(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	_, wire := seal(t, alice, bob.Public(), message.Text("strict"))
	s := string(wire)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(wire, &m); err != nil {
		t.Fatal(err)
	}
	id := strings.Trim(string(m["id"]), `"`)
	// Same id bytes, non-zero padding bits: decodes to the same 16 bytes
	// with a lax decoder.
	last := strings.IndexByte(base64Alphabet, id[21])
	laxID := id[:21] + string(base64Alphabet[last|1]) + "=="
	if last|1 == last {
		laxID = id[:21] + string(base64Alphabet[last&^1]) + "=="
	}
	tests := []struct {
		name string
		wire string
		want error
	}{
		{"too large", s + strings.Repeat(" ", message.MaxSize), message.ErrTooLarge},
		{"empty", "", message.ErrMalformed},
		{"null", "null", message.ErrMalformed},
		{"array", "[" + s + "]", message.ErrMalformed},
		{"trailing data", s + "{}", message.ErrMalformed},
		{"trailing garbage", s + "x", message.ErrMalformed},
		{"truncated", s[:len(s)-1], message.ErrMalformed},
		{"unknown field", strings.Replace(s, `{"v":2,`, `{"v":2,"x":0,`, 1), message.ErrMalformed},
		{"repeated field", strings.Replace(s, `{"v":2,`, `{"v":2,"v":2,`, 1), message.ErrMalformed},
		{"repeated v, other value", strings.Replace(s, `{"v":2,`, `{"v":2,"v":1,`, 1), message.ErrMalformed},
		{"repeated kc", strings.Replace(s, `"kc":`, `"kc":"","kc":`, 1), message.ErrMalformed},
		{"repeated ts", strings.Replace(s, `"ts":`, `"ts":0,"ts":`, 1), message.ErrMalformed},
		{"case variant", strings.Replace(s, `"from":`, `"FROM":`, 1), message.ErrMalformed},
		{"missing sig", string(deleteField(t, wire, "sig")), message.ErrMalformed},
		{"missing v", string(deleteField(t, wire, "v")), message.ErrMalformed},
		{"missing kc", string(deleteField(t, wire, "kc")), message.ErrMalformed},
		{"v 1 with kc", string(mutate(t, wire, "v", "1")), message.ErrMalformed},
		{"v 3", string(mutate(t, wire, "v", "3")), message.ErrMalformed},
		{"v 0", string(mutate(t, wire, "v", "0")), message.ErrMalformed},
		{"v 2.0", string(mutate(t, wire, "v", "2.0")), message.ErrMalformed},
		{"v 02", strings.Replace(s, `{"v":2,`, `{"v":02,`, 1), message.ErrMalformed},
		{"v string", string(mutate(t, wire, "v", `"2"`)), message.ErrMalformed},
		{"kc short", string(mutate(t, wire, "kc", b64(make([]byte, 31)))), message.ErrMalformed},
		{"kc long", string(mutate(t, wire, "kc", b64(make([]byte, 33)))), message.ErrMalformed},
		{"kc number", string(mutate(t, wire, "kc", "0")), message.ErrMalformed},
		{"ts negative", string(mutate(t, wire, "ts", "-1")), message.ErrMalformed},
		{"ts fraction", string(mutate(t, wire, "ts", "1767225600.0")), message.ErrMalformed},
		{"ts exponent", string(mutate(t, wire, "ts", "1.7672256e9")), message.ErrMalformed},
		{"ts string", string(mutate(t, wire, "ts", `"1767225600"`)), message.ErrMalformed},
		{"ts overflow", string(mutate(t, wire, "ts", "9223372036854775808")), message.ErrMalformed},
		{"id short", string(mutate(t, wire, "id", b64(make([]byte, 15)))), message.ErrMalformed},
		{"id long", string(mutate(t, wire, "id", b64(make([]byte, 17)))), message.ErrMalformed},
		{"id padding bits", string(mutate(t, wire, "id", strconv.Quote(laxID))), message.ErrMalformed},
		{"id newline", string(mutate(t, wire, "id", strconv.Quote(id[:10]+"\n"+id[10:]))), message.ErrMalformed},
		{"id unpadded", string(mutate(t, wire, "id", strconv.Quote(strings.TrimRight(id, "=")))), message.ErrMalformed},
		{"id url alphabet", string(mutate(t, wire, "id", b64url(t, 16))), message.ErrMalformed},
		{"id number", string(mutate(t, wire, "id", "1")), message.ErrMalformed},
		{"salt short", string(mutate(t, wire, "salt", b64(make([]byte, 31)))), message.ErrMalformed},
		{"sig short", string(mutate(t, wire, "sig", b64(make([]byte, 63)))), message.ErrMalformed},
		{"ct shorter than tag", string(mutate(t, wire, "ct", b64(make([]byte, 15)))), message.ErrMalformed},
		{"ct null", string(mutate(t, wire, "ct", "null")), message.ErrMalformed},
		{"from upper hex", string(mutate(t, wire, "from", strconv.Quote(strings.ToUpper(alice.Public().String())))), kez.ErrInvalidKey},
		{"from no prefix", string(mutate(t, wire, "from", strconv.Quote(alice.Public().Hex()))), kez.ErrInvalidKey},
		{"to small order", string(mutate(t, wire, "to", `"ed25519:0100000000000000000000000000000000000000000000000000000000000000"`)), kez.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := message.Parse([]byte(tt.wire))
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse = %v, want %v", err, tt.want)
			}
		})
	}
	// Member order and white space are free.
	relaxed := `{ "sig" : ` + string(m["sig"]) + `, "ct":` + string(m["ct"]) + `, "salt":` + string(m["salt"]) +
		",\n\"ts\":" + string(m["ts"]) + `, "to":` + string(m["to"]) + `, "from":` + string(m["from"]) +
		`, "kc":` + string(m["kc"]) + `, "id":` + string(m["id"]) + "\t, \"v\" :2 }\n"
	e, err := message.Parse([]byte(relaxed))
	if err != nil {
		t.Fatalf("Parse(reordered) = %v", err)
	}
	if again, _ := e.Marshal(); !bytes.Equal(again, wire) {
		t.Error("reordered envelope does not re-marshal to the canonical form")
	}
	if _, err := e.Open(bob, alice.Public()); err != nil {
		t.Errorf("Open(reordered) = %v", err)
	}
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// b64url returns n bytes in URL-safe base64 that contain '-' or '_'.
func b64url(t *testing.T, n int) string {
	b := bytes.Repeat([]byte{0xfb, 0xff}, n)[:n]
	s := base64.URLEncoding.EncodeToString(b)
	if !strings.ContainsAny(s, "-_") {
		t.Fatal("no URL-only characters")
	}
	return strconv.Quote(s)
}

func deleteField(t *testing.T, wire []byte, field string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(wire, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, field)
	b, _ := json.Marshal(m)
	return b
}

func TestEnvelopeJSON(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	e, wire := seal(t, alice, bob.Public(), message.Text("stored"))
	type stored struct {
		Env message.Envelope  `json:"env"`
		PT  message.Plaintext `json:"pt"`
	}
	pt, _ := e.Open(bob, alice.Public())
	b, err := json.Marshal(stored{e, pt})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, wire) {
		t.Errorf("stored form %s does not embed the wire form", b)
	}
	var back stored
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.PT.Body() != "stored" {
		t.Errorf("plaintext body %q", back.PT.Body())
	}
	if w, _ := back.Env.Marshal(); !bytes.Equal(w, wire) {
		t.Error("envelope changed through JSON")
	}
	if _, err := json.Marshal(stored{}); err == nil {
		t.Error("zero envelope marshals")
	}
}

func TestWrapKey(t *testing.T) {
	alice, bob, carol := testKey(t, "alice"), testKey(t, "bob"), testKey(t, "carol")
	key := bytes.Repeat([]byte{7}, 32)
	ad := []byte("blake3:1234")
	w, err := message.WrapKey(alice, bob.Public(), key, ad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != message.WrappedKeySize {
		t.Fatalf("wrapped %d bytes", len(w))
	}
	got, err := message.UnwrapKey(bob, alice.Public(), w, ad)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("UnwrapKey = %x, %v", got, err)
	}
	w2, _ := message.WrapKey(alice, bob.Public(), key, ad, nil)
	if bytes.Equal(w, w2) {
		t.Error("two wraps are equal: salt not fresh")
	}
	self, _ := message.WrapKey(alice, alice.Public(), key, ad, nil)
	if got, err := message.UnwrapKey(alice, alice.Public(), self, ad); err != nil || !bytes.Equal(got, key) {
		t.Errorf("wrap for self: %v", err)
	}
	fails := []struct {
		name    string
		me      *message.Identity
		from    kez.PublicKey
		wrapped []byte
		ad      []byte
		want    error
	}{
		{"wrong recipient", carol, alice.Public(), w, ad, message.ErrDecrypt},
		{"wrong sender", bob, carol.Public(), w, ad, message.ErrDecrypt},
		{"wrong ad", bob, alice.Public(), w, []byte("blake3:5678"), message.ErrDecrypt},
		{"no ad", bob, alice.Public(), w, nil, message.ErrDecrypt},
		{"salt flipped", bob, alice.Public(), flipAt(w, 0), ad, message.ErrDecrypt},
		{"key flipped", bob, alice.Public(), flipAt(w, 40), ad, message.ErrDecrypt},
		{"tag flipped", bob, alice.Public(), flipAt(w, len(w)-1), ad, message.ErrDecrypt},
		{"short", bob, alice.Public(), w[:len(w)-1], ad, message.ErrMalformed},
		{"zero sender", bob, kez.PublicKey{}, w, ad, kez.ErrInvalidKey},
	}
	for _, tt := range fails {
		if _, err := message.UnwrapKey(tt.me, tt.from, tt.wrapped, tt.ad); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := message.WrapKey(alice, bob.Public(), key[:31], ad, nil); !errors.Is(err, message.ErrMalformed) {
		t.Errorf("31-byte key: %v", err)
	}
	// A wrapped key is not a message key: same parties and salt, other label.
	e, _ := seal(t, alice, bob.Public(), message.Text(string(key)))
	if bytes.Contains(e.Ciphertext, w[32:]) {
		t.Error("wrap ciphertext appears in a message")
	}
}

func flipAt(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}
