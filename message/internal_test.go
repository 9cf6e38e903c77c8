package message

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"

	"kez.lat/kez"
)

// refKey is the message key computed the plain way, with
// golang.org/x/crypto/curve25519 and no cache: the reference that the
// vectors and the cache are checked against.
func refKey(scalar, peer, salt, info []byte) ([]byte, error) {
	shared, err := curve25519.X25519(scalar, peer)
	if err != nil {
		return nil, err
	}
	return hkdfKey(shared, salt, info)
}

// lowOrder are the X25519 public values (u-coordinates) whose product with
// any scalar is zero: the small-order u of the curve and its twist (0, 1,
// the two of order 8, p-1) and the non-canonical encodings p and p+1.
// RFC 7748 masks bit 255, so the encodings with it set in libsodium's list
// reduce to other points and are not low-order here.
var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000", // 0
	"0100000000000000000000000000000000000000000000000000000000000000", // 1
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func TestLowOrderPeerRejected(t *testing.T) {
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range lowOrder {
		peer, _ := hex.DecodeString(h)
		shared, err := x25519(k.X25519(), peer)
		if !errors.Is(err, kez.ErrInvalidKey) || shared != nil {
			t.Errorf("x25519(low-order %s) = %x, %v; want ErrInvalidKey", h[:8], shared, err)
		}
	}
	// The ed25519 keys of small order never become a kez.PublicKey, so the
	// case above cannot arise through Seal or Open.
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	} {
		if _, err := kez.ParsePublicKeyHex(h); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(small order %s) = %v", h[:8], err)
		}
	}
}

func TestSharedSecretSymmetric(t *testing.T) {
	a, b := newID(t), newID(t)
	salt := []byte("salt")
	info := keyInfo(formats[Version].label, a.Public(), b.Public())
	k1, err1 := a.deriveKey(b.Public(), salt, info)
	k2, err2 := b.deriveKey(a.Public(), salt, info)
	if err1 != nil || err2 != nil || hex.EncodeToString(k1) != hex.EncodeToString(k2) {
		t.Fatalf("keys differ: %x %v / %x %v", k1, err1, k2, err2)
	}
	w, _ := a.deriveKey(b.Public(), salt, keyInfo(wrapLabel, a.Public(), b.Public()))
	if hex.EncodeToString(w) == hex.EncodeToString(k1) {
		t.Error("wrap key equals message key")
	}
	v1, _ := a.deriveKey(b.Public(), salt, keyInfo(formats[Version1].label, a.Public(), b.Public()))
	if hex.EncodeToString(v1) == hex.EncodeToString(k1) {
		t.Error("v1 key equals v2 key")
	}
}

// newID returns the identity of a new random key, closed at the end of
// the test.
func newID(t testing.TB) *Identity {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := NewIdentity(k)
	t.Cleanup(id.Close)
	return id
}

// TestSharedSecretCache: the cached secret is the plain X25519 of the
// pair, a new salt still gives a new key, and the cache stays bounded.
func TestSharedSecretCache(t *testing.T) {
	ak, _ := kez.GenerateKey(nil)
	bk, _ := kez.GenerateKey(nil)
	a := NewIdentity(ak)
	defer a.Close()
	want, err := curve25519.X25519(ak.X25519(), bk.Public().X25519())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var s [32]byte
		err := a.sharedSecret(bk.Public(), &s)
		if err != nil || hex.EncodeToString(s[:]) != hex.EncodeToString(want) {
			t.Fatalf("sharedSecret = %x, %v; want %x", s, err, want)
		}
	}
	if len(a.shared) != 1 {
		t.Fatalf("cache holds %d pairs after one peer", len(a.shared))
	}
	info := keyInfo(formats[Version].label, ak.Public(), bk.Public())
	salt1, salt2 := make([]byte, SaltSize), make([]byte, SaltSize)
	rand.Read(salt1)
	rand.Read(salt2)
	k1, _ := a.deriveKey(bk.Public(), salt1, info)
	k2, _ := a.deriveKey(bk.Public(), salt2, info)
	r1, _ := refKey(ak.X25519(), bk.Public().X25519(), salt1, info)
	if hex.EncodeToString(k1) != hex.EncodeToString(r1) {
		t.Fatal("cached key differs from the plain computation")
	}
	if hex.EncodeToString(k1) == hex.EncodeToString(k2) {
		t.Fatal("two salts gave one key")
	}
	for range maxCached + 10 {
		p, _ := kez.GenerateKey(nil)
		if _, err := a.deriveKey(p.Public(), salt1, info); err != nil {
			t.Fatal(err)
		}
		if _, err := a.parseKey(p.Public().String()); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.shared) > maxCached || a.keys.len() > maxCached {
		t.Fatalf("caches hold %d pairs and %d keys, bound %d", len(a.shared), a.keys.len(), maxCached)
	}
}

// TestIdentityClose: Close clears the scalar and every cached secret, and
// the identity refuses to seal, open, wrap or unwrap afterwards.
func TestIdentityClose(t *testing.T) {
	ak, _ := kez.GenerateKey(nil)
	seed := ak.Seed()
	a, b := NewIdentity(ak), newID(t)
	e, _, err := Seal(a, b.Public(), Text("hi"), time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	back, wire, err := Seal(b, a.Public(), Text("back"), time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	cached := a.shared[b.Public()]
	if cached == nil || *cached == [32]byte{} {
		t.Fatal("no cached shared secret after Seal")
	}
	a.Close()
	var zero [32]byte
	if a.scalar != zero || *cached != zero || len(a.shared) != 0 || a.key != nil {
		t.Error("Close left secrets behind")
	}
	if _, _, err := Seal(a, b.Public(), Text("x"), time.Unix(0, 0), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Seal after Close = %v, want ErrClosed", err)
	}
	if _, err := back.Open(a, b.Public()); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v, want ErrClosed", err)
	}
	if _, err := WrapKey(a, b.Public(), make([]byte, ContentKeySize), nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("WrapKey after Close = %v, want ErrClosed", err)
	}
	if _, err := UnwrapKey(a, b.Public(), make([]byte, WrappedKeySize), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("UnwrapKey after Close = %v, want ErrClosed", err)
	}
	// Parsing needs no secret: it still works, without caching.
	if _, err := a.Parse(wire); err != nil {
		t.Errorf("Parse after Close = %v", err)
	}
	if a.keys.len() != 0 {
		t.Error("Parse after Close cached a key")
	}
	// The key itself is the caller's: Close leaves it intact.
	if !bytes.Equal(ak.Seed(), seed) {
		t.Error("Close wiped the private key it does not own")
	}
	// b is untouched by a's Close.
	if _, err := e.Open(b, a.Public()); err != nil {
		t.Errorf("the other identity: %v", err)
	}
	a.Close() // idempotent
}

// sealVersionID seals "hello" as a version v envelope at ts, with random
// id and salt.
func sealVersionID(t *testing.T, v int, from *Identity, to kez.PublicKey, ts int64) Envelope {
	t.Helper()
	e := Envelope{Version: v, From: from.Public(), To: to, Timestamp: ts}
	rand.Read(e.ID[:])
	rand.Read(e.Salt[:])
	if _, err := e.seal(from, Text("hello")); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestShiftedTS: the attack on the v1 signed bytes. Moving the last digit
// of ts into the salt, and the salt's last byte on into the next field,
// leaves the v1 signed bytes unchanged, so the signature verifies and only
// the AEAD refuses (ErrDecrypt, never shown); in v2 every field has its
// own place in the transcript, and the same shift breaks the signature.
func TestShiftedTS(t *testing.T) {
	ak, _ := kez.GenerateKey(nil)
	alice, bob := NewIdentity(ak), newID(t)
	defer alice.Close()
	for _, v := range []int{Version1, Version} {
		e := sealVersionID(t, v, alice, bob.Public(), 1767225641)
		for digits := 1; digits <= 3; digits++ {
			s := e
			for range digits {
				s = shiftTS(s)
			}
			w, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			p, err := bob.Parse(w)
			if err != nil {
				t.Fatalf("v%d, %d digits: Parse = %v", v, digits, err)
			}
			same := bytes.Equal(p.signedMessage(p.associatedData()), e.signedMessage(e.associatedData()))
			pt, err := p.Open(bob, alice.Public())
			if !pt.IsZero() {
				t.Errorf("v%d, %d digits: shifted envelope opened to %s", v, digits, pt.Raw())
			}
			switch v {
			case Version1:
				if !same || !errors.Is(err, ErrDecrypt) {
					t.Errorf("v1, %d digits: same signed bytes %v, Open = %v; want true, ErrDecrypt", digits, same, err)
				}
			default:
				if same || !errors.Is(err, kez.ErrBadSignature) {
					t.Errorf("v2, %d digits: same signed bytes %v, Open = %v; want false, ErrBadSignature", digits, same, err)
				}
			}
		}
	}
}

// TestTranscriptInjective: a v2 transcript splits back into the fields at
// fixed offsets, so two envelopes that differ in any field have different
// transcripts (and the associated data is the same fields behind a fixed
// label).
func TestTranscriptInjective(t *testing.T) {
	keys := []kez.PublicKey{newID(t).Public(), newID(t).Public()}
	for i := range 200 {
		e := Envelope{Version: Version, From: keys[i%2], To: keys[(i/2)%2]}
		rand.Read(e.ID[:])
		rand.Read(e.Salt[:])
		rand.Read(e.Commitment[:])
		var ts [8]byte
		rand.Read(ts[:])
		e.Timestamp = int64(binary.BigEndian.Uint64(ts[:]) >> (1 + i%63))
		e.Ciphertext = make([]byte, i%40)
		rand.Read(e.Ciphertext)
		tr := e.signedMessage(e.associatedData())

		var d Envelope
		rest := tr
		take := func(n int) []byte { b := rest[:n]; rest = rest[n:]; return b }
		copy(d.ID[:], take(IDSize))
		from, err1 := kez.NewPublicKey(take(32))
		to, err2 := kez.NewPublicKey(take(32))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		d.Version, d.From, d.To = Version, from, to
		d.Timestamp = int64(binary.BigEndian.Uint64(take(8)))
		copy(d.Salt[:], take(SaltSize))
		copy(d.Commitment[:], take(CommitmentSize))
		d.Ciphertext = rest
		d.Sig = e.Sig
		if !reflect.DeepEqual(d, e) {
			t.Fatalf("transcript decodes to\n%+v\nwant\n%+v", d, e)
		}
		ad := e.associatedData()
		if want := append([]byte("kez-msg-v2\x00"), tr[:fixedSize]...); !bytes.Equal(ad, want) {
			t.Fatalf("ad = %x, want %x", ad, want)
		}
	}
}

// TestKeyCommitment: a v2 envelope whose signed kc is not its key's is
// refused before decryption, even though the signature and the AEAD would
// both pass; a changed kc that is not signed again breaks the signature.
func TestKeyCommitment(t *testing.T) {
	ak, _ := kez.GenerateKey(nil)
	alice, bob := NewIdentity(ak), newID(t)
	defer alice.Close()
	e, _, err := Seal(alice, bob.Public(), Text("pay carol 10"), time.Unix(1767225600, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := bob.deriveKey(alice.Public(), e.Salt[:], e.keyInfo())
	if err != nil {
		t.Fatal(err)
	}
	if kc := keyCommitment(key); kc != e.Commitment {
		t.Fatalf("kc = %x, want SHA-256(label || key) = %x", e.Commitment, kc)
	}
	bad := e
	bad.Commitment[0] ^= 1
	if _, err := bad.Open(bob, alice.Public()); !errors.Is(err, kez.ErrBadSignature) {
		t.Errorf("kc changed: Open = %v, want ErrBadSignature", err)
	}
	resign(&bad, ak)
	if pt, err := bad.Open(bob, alice.Public()); !errors.Is(err, ErrDecrypt) || !pt.IsZero() {
		t.Errorf("wrong kc, signed: Open = %q, %v; want ErrDecrypt", pt.Raw(), err)
	}
}

// TestRelabel: an envelope of one version read as the other never opens.
func TestRelabel(t *testing.T) {
	ak, _ := kez.GenerateKey(nil)
	alice, bob := NewIdentity(ak), newID(t)
	defer alice.Close()
	for _, v := range []int{Version1, Version} {
		e := sealVersionID(t, v, alice, bob.Public(), 1767225600)
		r := e
		if v == Version {
			// Relabelled v1 with kc kept: not a v1 envelope.
			r.Version = Version1
			if w, err := r.Marshal(); !errors.Is(err, ErrMalformed) {
				t.Errorf("v2 as v1 with kc: Marshal = %s, %v; want ErrMalformed", w, err)
			}
			r.Commitment = [CommitmentSize]byte{}
		} else {
			r.Version = Version
			key, _ := bob.deriveKey(alice.Public(), e.Salt[:], e.keyInfo())
			r.Commitment = keyCommitment(key)
		}
		w, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p, err := bob.Parse(w)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Open(bob, alice.Public()); !errors.Is(err, kez.ErrBadSignature) {
			t.Errorf("v%d relabelled v%d: Open = %v, want ErrBadSignature", v, r.Version, err)
		}
	}
}

// TestMarshalOneAllocation: the wire form is written into the buffer
// Marshal sizes for it, with the longest timestamp too (no regrowth).
func TestMarshalOneAllocation(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	id := NewIdentity(k)
	defer id.Close()
	for _, ts := range []int64{0, math.MaxInt64} {
		e, _, err := Seal(id, k.Public(), Text("hi"), time.Unix(ts, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Timestamp = ts
		w, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalFixed + b64.EncodedLen(len(e.Ciphertext)); cap(w) != want {
			t.Errorf("ts %d: capacity %d, want %d (len %d)", ts, cap(w), want, len(w))
		}
	}
}

// TestIdentityPrintsNoSecret: no fmt verb shows the identity's scalar
// (the ed25519 signing secret) or a byte of it, only its public key.
func TestIdentityPrintsNoSecret(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	id := NewIdentity(k)
	dec := fmt.Sprint(id.scalar[:])           // "[91 238 ...]"
	inner := strings.Trim(dec, "[]")          // the bytes as %v prints them
	hexed := fmt.Sprintf("%x", id.scalar[:8]) // as %x would
	want := "message.Identity(" + k.Public().String() + ")"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		got := fmt.Sprintf(verb, id)
		if got != want || strings.Contains(got, inner) || strings.Contains(got, hexed) {
			t.Errorf("%s of an Identity = %.80q, want %q", verb, got, want)
		}
	}
}
