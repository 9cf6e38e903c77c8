package share_test

import (
	"bytes"
	"testing"

	"kez.lat/kez"

	"kez.lat/kez/keztest"
	"kez.lat/kez/share"
)

func FuzzParseAnnouncement(f *testing.F) {
	a, _, _ := announce(f)
	good, err := a.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(field(f, good, "addrs", `[]`))
	f.Add(field(f, good, "mime", ""))
	f.Add(field(f, good, "name", `"../x"`))
	f.Add([]byte(`{"type":"file_share","v":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := share.ParseAnnouncement(raw)
		if err != nil {
			return
		}
		// Anything accepted re-encodes, and the encoding parses back to
		// the same announcement and encodes the same again.
		enc, err := a.Marshal()
		if err != nil {
			t.Fatalf("accepted announcement does not marshal: %v", err)
		}
		b, err := share.ParseAnnouncement(enc)
		if err != nil {
			t.Fatalf("re-encoded announcement refused: %v\n%s", err, enc)
		}
		if !b.Equal(a) {
			t.Fatalf("round trip changed the announcement:\n%+v\n%+v", a, b)
		}
		if enc2, _ := b.Marshal(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
		if _, err := a.Plaintext(); err != nil {
			t.Fatalf("accepted announcement is no plaintext: %v", err)
		}
	})
}

// FuzzParseManifest parses raw as a manifest of alice's, and also raw as
// the payload of a manifest alice signed, so that the fuzzer reaches the
// payload checks and Open past the signature.
func FuzzParseManifest(f *testing.F) {
	alice, bob := keztest.SeedKey(f, 0x00), keztest.SeedKey(f, 0x20)
	good, err := share.BuildManifest(alice, 3, t0, manifestEntries(f)[:2], nil)
	if err != nil {
		f.Fatal(err)
	}
	m, err := share.ParseManifest(good, alice.Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(m.Payload())
	f.Add(payload(alice.Public(), "1", "0"))
	f.Add([]byte(`{"payload":"","sig":""}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkManifest(t, alice, bob, raw)
		checkManifest(t, alice, bob, signManifest(alice, raw))
	})
}

// checkManifest checks what ParseManifest makes of raw as alice's
// manifest, and what bob opens of it.
func checkManifest(t *testing.T, alice, bob *kez.PrivateKey, raw []byte) {
	m, err := share.ParseManifest(raw, alice.Public())
	if err != nil {
		return
	}
	// Accepted: the canonical wire form parses to the same manifest.
	m2, err := share.ParseManifest(m.Marshal(), alice.Public())
	if err != nil {
		t.Fatalf("re-encoded manifest refused: %v", err)
	}
	if m2.Seq() != m.Seq() || m2.Ctime() != m.Ctime() || m2.Len() != m.Len() || !bytes.Equal(m2.Payload(), m.Payload()) {
		t.Fatal("round trip changed the manifest")
	}
	// Opening never panics, and each entry that opens is valid, for bob,
	// and builds again.
	got, _ := m.Open(bob)
	for _, e := range got {
		if err := e.Validate(); err != nil || !e.To.Equal(bob.Public()) {
			t.Fatalf("Open returned an invalid entry: %v", err)
		}
	}
	if len(got) > 0 {
		re, err := share.BuildManifest(alice, m.Seq(), t0, got, nil)
		if err != nil {
			t.Fatalf("opened entries do not build: %v", err)
		}
		m3, err := share.ParseManifest(re, alice.Public())
		if err != nil {
			t.Fatal(err)
		}
		if again, err := m3.Open(bob); err != nil || !entriesEqual(again, got) {
			t.Fatalf("rebuilt manifest opens to %d entries, %v", len(again), err)
		}
	}
}
