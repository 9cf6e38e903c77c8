package share_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"lukechampine.com/blake3"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/keztest"
	"kez.lat/kez/share"
)

// manifestEntries returns alice's entries: two files for bob, one for
// carol, one of bob's files also for carol, and one for alice herself.
func manifestEntries(tb testing.TB) []share.Entry {
	tb.Helper()
	alice, bob, carol := keztest.SeedKey(tb, 0x00), keztest.SeedKey(tb, 0x20), keztest.SeedKey(tb, 0x40)
	k1, k2, k3 := testKey(tb, 1), testKey(tb, 2), testKey(tb, 3)
	_, f1 := encryptFile(tb, k1, []byte("for bob"), "bob.txt", "text/plain")
	_, f2 := encryptFile(tb, k2, bytes.Repeat([]byte{7}, filecrypt.ChunkSize+1), "big.bin", "")
	_, f3 := encryptFile(tb, k3, []byte("for carol"), "carol.md", "text/markdown")
	return []share.Entry{
		{To: bob.Public(), File: f1, Key: k1},
		{To: carol.Public(), File: f3, Key: k3},
		{To: bob.Public(), File: f2, Key: k2},
		{To: carol.Public(), File: f1, Key: k1},
		{To: alice.Public(), File: f2, Key: k2},
	}
}

func entriesEqual(a, b []share.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].To.Equal(b[i].To) || a[i].File != b[i].File || !a[i].Key.Equal(b[i].Key) {
			return false
		}
	}
	return true
}

func TestManifestRoundTrip(t *testing.T) {
	alice, bob, carol, dave := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20), keztest.SeedKey(t, 0x40), keztest.SeedKey(t, 0x60)
	entries := manifestEntries(t)
	raw, err := share.BuildManifest(alice, 7, t0, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := share.ParseManifest(raw, alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq() != 7 || m.Ctime() != t0.Unix() || !m.Owner().Equal(alice.Public()) || m.Len() != len(entries) {
		t.Fatalf("manifest seq %d ctime %d owner %v len %d", m.Seq(), m.Ctime(), m.Owner(), m.Len())
	}
	if !bytes.Equal(m.Marshal(), raw) {
		t.Fatal("Marshal differs from the built bytes")
	}
	for i, r := range m.Recipients() {
		if !r.Equal(entries[i].To) {
			t.Errorf("recipient %d = %v", i, r)
		}
	}
	tests := []struct {
		name string
		me   *kez.PrivateKey
		want []share.Entry
	}{
		{"bob", bob, []share.Entry{entries[0], entries[2]}},
		{"carol", carol, []share.Entry{entries[1], entries[3]}},
		{"alice", alice, []share.Entry{entries[4]}},
		{"dave", dave, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Open(tt.me)
			if err != nil {
				t.Fatal(err)
			}
			if !entriesEqual(got, tt.want) {
				t.Fatalf("Open = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestManifestPointer(t *testing.T) {
	alice := keztest.SeedKey(t, 0x00)
	raw, err := share.BuildManifest(alice, 1, t0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := share.Pointer(raw)
	if want := blob.Hash(blake3.Sum256(raw)).String(); p.Manifest != want || p.Size != int64(len(raw)) {
		t.Fatalf("Pointer = %+v, want %s, %d", p, want, len(raw))
	}
	m, err := share.ParseManifest(raw, alice.Public())
	if err != nil || m.Len() != 0 {
		t.Fatalf("empty manifest: %d entries, %v", m.Len(), err)
	}
}

// payload is a manifest payload written by hand.
func payload(owner kez.PublicKey, seq, ctime string, entries ...string) []byte {
	return []byte(`{"v":1,"owner":"` + owner.String() + `","seq":` + seq + `,"ctime":` + ctime + `,"entries":[` + strings.Join(entries, ",") + `]}`)
}

func boxJSON(to kez.PublicKey, box []byte) string {
	return `{"to":"` + to.String() + `","box":"` + base64.StdEncoding.EncodeToString(box) + `"}`
}

func TestParseManifestRejects(t *testing.T) {
	alice, bob, carol := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20), keztest.SeedKey(t, 0x40)
	good, err := share.BuildManifest(alice, 3, t0, manifestEntries(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wire struct{ Payload, Sig []byte }
	if err := json.Unmarshal(good, &wire); err != nil {
		t.Fatal(err)
	}
	resign := func(p []byte) []byte { return signManifest(alice, p) }
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	wireOf := func(p, sig []byte) []byte {
		return []byte(`{"payload":"` + base64.StdEncoding.EncodeToString(p) + `","sig":"` + base64.StdEncoding.EncodeToString(sig) + `"}`)
	}
	box := bytes.Repeat([]byte{1}, 96)
	tooMany := make([]string, share.MaxEntries+1)
	for i := range tooMany {
		tooMany[i] = boxJSON(bob.Public(), box)
	}
	pub := alice.Public()
	tests := []struct {
		name  string
		raw   []byte
		owner kez.PublicKey
		want  error
	}{
		{"tampered payload", wireOf(flip(wire.Payload, 10), wire.Sig), pub, share.ErrMalformed},
		{"tampered box", wireOf(bytes.Replace(wire.Payload, []byte(`"box":"`), []byte(`"box":"A`), 1)[:len(wire.Payload)], wire.Sig), pub, share.ErrMalformed},
		{"tampered seq", wireOf(bytes.Replace(wire.Payload, []byte(`"seq":3`), []byte(`"seq":4`), 1), wire.Sig), pub, share.ErrBadSignature},
		{"tampered sig", wireOf(wire.Payload, flip(wire.Sig, 5)), pub, share.ErrBadSignature},
		{"sigchain context", wireOf(wire.Payload, alice.Sign(kez.PurposeSigchain, wire.Payload)), pub, share.ErrBadSignature},
		{"signed by carol", signManifest(carol, wire.Payload), pub, share.ErrBadSignature},
		{"wrong owner", good, bob.Public(), share.ErrWrongOwner},
		{"carol's manifest", signManifest(carol, payload(carol.Public(), "1", "0")), pub, share.ErrWrongOwner},
		{"oversize", append(bytes.Clone(good), bytes.Repeat([]byte(" "), share.MaxManifestSize)...), pub, share.ErrTooLarge},
		{"too many entries", resign(payload(pub, "1", "0", tooMany...)), pub, share.ErrTooLarge},
		{"box too large", resign(payload(pub, "1", "0", boxJSON(bob.Public(), make([]byte, 96+share.MaxEntrySize+1)))), pub, share.ErrTooLarge},
		{"box too small", resign(payload(pub, "1", "0", boxJSON(bob.Public(), make([]byte, 97)))), pub, share.ErrMalformed},
		{"not JSON", []byte(`{"payload":`), pub, share.ErrMalformed},
		{"unknown wire field", []byte(strings.Replace(string(good), `{"payload"`, `{"x":1,"payload"`, 1)), pub, share.ErrMalformed},
		{"repeated wire field", []byte(strings.Replace(string(good), `,"sig"`, `,"payload":"","sig"`, 1)), pub, share.ErrMalformed},
		{"non-canonical base64", []byte(strings.Replace(string(good), `{"payload":"`, `{"payload":"\n`, 1)), pub, share.ErrMalformed},
		{"short sig", wireOf(wire.Payload, wire.Sig[:63]), pub, share.ErrMalformed},
		{"empty payload", wireOf(nil, wire.Sig), pub, share.ErrMalformed},
		{"v 2", resign(bytes.Replace(payload(pub, "1", "0"), []byte(`"v":1`), []byte(`"v":2`), 1)), pub, share.ErrVersion},
		{"seq 0", resign(payload(pub, "0", "0")), pub, share.ErrMalformed},
		{"seq negative", resign(payload(pub, "-1", "0")), pub, share.ErrMalformed},
		{"ctime float", resign(payload(pub, "1", "1.5")), pub, share.ErrMalformed},
		{"unknown payload field", resign(bytes.Replace(payload(pub, "1", "0"), []byte(`{"v":1`), []byte(`{"v":1,"x":0`), 1)), pub, share.ErrMalformed},
		{"repeated payload field", resign(bytes.Replace(payload(pub, "1", "0"), []byte(`{"v":1`), []byte(`{"v":1,"v":1`), 1)), pub, share.ErrMalformed},
		{"entries null", resign([]byte(`{"v":1,"owner":"` + pub.String() + `","seq":1,"ctime":0,"entries":null}`)), pub, share.ErrMalformed},
		{"bad recipient", resign(payload(pub, "1", "0", `{"to":"ed25519:00","box":"`+base64.StdEncoding.EncodeToString(box)+`"}`)), pub, share.ErrMalformed},
		{"unknown entry field", resign(payload(pub, "1", "0", `{"to":"`+bob.Public().String()+`","box":"`+base64.StdEncoding.EncodeToString(box)+`","name":"x"}`)), pub, share.ErrMalformed},
		{"invalid UTF-8 payload", resign([]byte("{\"v\":1,\"x\":\"\xff\"}")), pub, share.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := share.ParseManifest(tt.raw, tt.owner)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseManifest = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestManifestOpenBadBoxes(t *testing.T) {
	alice, bob, carol := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20), keztest.SeedKey(t, 0x40)
	entries := manifestEntries(t)
	raw, err := share.BuildManifest(alice, 1, t0, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wire struct{ Payload []byte }
	json.Unmarshal(raw, &wire)
	var p struct {
		Entries []struct {
			To  string `json:"to"`
			Box []byte `json:"box"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(wire.Payload, &p); err != nil {
		t.Fatal(err)
	}
	var boxes []string
	for _, e := range p.Entries {
		to, _ := kez.ParsePublicKey(e.To)
		boxes = append(boxes, boxJSON(to, e.Box))
	}
	// Carol's box moved into bob's slot, a garbage box for bob, and bob's
	// first box repeated: bob still gets his two good entries, and three
	// errors.
	carolBox := p.Entries[1].Box
	bad := append(append([]string{}, boxes...),
		boxJSON(bob.Public(), carolBox),
		boxJSON(bob.Public(), bytes.Repeat([]byte{9}, 200)),
		boxes[0],
	)
	m, err := share.ParseManifest(signManifest(alice, payload(alice.Public(), "2", "0", bad...)), alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Open(bob)
	if !entriesEqual(got, []share.Entry{entries[0], entries[2]}) {
		t.Errorf("Open = %+v", got)
	}
	if !errors.Is(err, share.ErrDecrypt) || !errors.Is(err, share.ErrMalformed) {
		t.Errorf("Open error = %v, want ErrDecrypt and ErrMalformed", err)
	}
	for _, i := range []int{5, 6, 7} {
		if !strings.Contains(err.Error(), fmt.Sprintf("manifest entry %d:", i)) {
			t.Errorf("Open error does not name entry %d: %v", i, err)
		}
	}
	// Boxes of another owner's manifest do not open in alice's.
	other, err := share.BuildManifest(carol, 1, t0, []share.Entry{{To: bob.Public(), File: entries[0].File, Key: entries[0].Key}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(other, &wire)
	json.Unmarshal(wire.Payload, &p)
	m, err = share.ParseManifest(signManifest(alice, payload(alice.Public(), "3", "0", boxJSON(bob.Public(), p.Entries[0].Box))), alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Open(bob); len(got) != 0 || !errors.Is(err, share.ErrDecrypt) {
		t.Errorf("lifted box: Open = %d entries, %v", len(got), err)
	}
}

func TestBuildManifestRejects(t *testing.T) {
	alice, bob := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20)
	entries := manifestEntries(t)
	mut := func(i int, f func(*share.Entry)) []share.Entry {
		es := append([]share.Entry(nil), entries...)
		f(&es[i])
		return es
	}
	many := make([]share.Entry, share.MaxEntries+1)
	tests := []struct {
		name    string
		seq     uint64
		entries []share.Entry
		want    error
	}{
		{"seq 0", 0, entries, share.ErrMalformed},
		{"seq over 2^53", 1 << 53, entries, share.ErrMalformed},
		{"path name", 1, mut(0, func(e *share.Entry) { e.Name = "../x" }), share.ErrName},
		{"size mismatch", 1, mut(0, func(e *share.Entry) { e.FileSize++ }), share.ErrFileSize},
		{"zero key", 1, mut(0, func(e *share.Entry) { e.Key = filecrypt.Key{} }), share.ErrMalformed},
		{"zero recipient", 1, mut(0, func(e *share.Entry) { e.To = kez.PublicKey{} }), kez.ErrInvalidKey},
		{"repeated", 1, append(entries, entries[0]), share.ErrMalformed},
		{"too many", 1, many, share.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := share.BuildManifest(alice, tt.seq, t0, tt.entries, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("BuildManifest = %v, want %v", err, tt.want)
			}
		})
	}
	_ = bob
}

func TestManifestSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a manifest of MaxEntries entries")
	}
	alice, bob := keztest.SeedKey(t, 0x00), keztest.SeedKey(t, 0x20)
	k := testKey(t, 5)
	// MaxEntries entries with typical names fit in MaxManifestSize; with
	// names of MaxNameLen bytes the byte limit binds first.
	_, f := encryptFile(t, k, []byte("x"), "IMG_20260101_120000_holiday_at_the_lake.jpg", "image/jpeg")
	es := make([]share.Entry, share.MaxEntries)
	for i := range es {
		es[i] = share.Entry{To: bob.Public(), File: f, Key: k}
		es[i].Blob[0], es[i].Blob[1] = byte(i), byte(i>>8)
	}
	raw, err := share.BuildManifest(alice, 1, t0, es, nil)
	if err != nil {
		t.Fatalf("a full manifest: %v", err)
	}
	t.Logf("%d entries: %d bytes", len(es), len(raw))
	if _, err := share.ParseManifest(raw, alice.Public()); err != nil {
		t.Fatal(err)
	}
	es[0].Name = strings.Repeat("名", 85)
	for i := range es {
		es[i].Name = es[0].Name
	}
	if _, err := share.BuildManifest(alice, 1, t0, es, nil); !errors.Is(err, share.ErrTooLarge) {
		t.Fatalf("a full manifest of 255-byte names: %v, want ErrTooLarge", err)
	}
}
