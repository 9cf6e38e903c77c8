package kez_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"github.com/nats-io/nkeys"

	"kez.lat/kez"
)

// RFC 8032 §7.1, TEST 1.
const (
	rfcSeedHex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPubHex  = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	rfcSigHex  = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

func rfcKey(tb testing.TB) *kez.PrivateKey {
	tb.Helper()
	return seedKey(tb, rfcSeedHex)
}

func seedKey(tb testing.TB, seedHex string) *kez.PrivateKey {
	tb.Helper()
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := kez.NewPrivateKey(seed)
	if err != nil {
		tb.Fatalf("NewPrivateKey: %v", err)
	}
	return k
}

func TestParsePublicKeyRoundTrip(t *testing.T) {
	pub := rfcKey(t).Public()
	text := "ed25519:" + rfcPubHex
	if got := pub.String(); got != text {
		t.Fatalf("String() = %q, want %q", got, text)
	}
	if got := pub.Hex(); got != rfcPubHex {
		t.Errorf("Hex() = %q, want %q", got, rfcPubHex)
	}

	k, err := kez.ParsePublicKey(text)
	if err != nil || !k.Equal(pub) {
		t.Errorf("ParsePublicKey(%q) = %v, %v; want %v", text, k, err, pub)
	}
	k, err = kez.ParsePublicKeyHex(rfcPubHex)
	if err != nil || !k.Equal(pub) {
		t.Errorf("ParsePublicKeyHex(%q) = %v, %v", rfcPubHex, k, err)
	}
	raw, _ := hex.DecodeString(rfcPubHex)
	k, err = kez.NewPublicKey(raw)
	if err != nil || !k.Equal(pub) || !bytes.Equal(k.Bytes(), raw) {
		t.Errorf("NewPublicKey = %v, %v", k, err)
	}

	nk := pub.NKey()
	if !strings.HasPrefix(nk, "U") {
		t.Errorf("NKey() = %q, want prefix U", nk)
	}
	if !nkeys.IsValidPublicUserKey(nk) {
		t.Errorf("NKey() = %q is not a valid nkeys user key", nk)
	}
	k, err = kez.ParseNKey(nk)
	if err != nil || !k.Equal(pub) {
		t.Errorf("ParseNKey(%q) = %v, %v", nk, k, err)
	}

	// Text marshaling, as JSON uses it.
	b, err := json.Marshal(map[string]kez.PublicKey{"k": pub})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"k":"` + text + `"}`; string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var back map[string]kez.PublicKey
	if err := json.Unmarshal(b, &back); err != nil || !back["k"].Equal(pub) {
		t.Errorf("json round trip = %v, %v", back, err)
	}

	// Bytes returns a copy.
	bs := pub.Bytes()
	bs[0] ^= 0xff
	if !bytes.Equal(pub.Bytes(), raw) {
		t.Errorf("modifying Bytes() changed the key")
	}
}

func TestPublicKeyZero(t *testing.T) {
	var zero kez.PublicKey
	if !zero.IsZero() {
		t.Errorf("zero PublicKey: IsZero = false")
	}
	if rfcKey(t).Public().IsZero() {
		t.Errorf("RFC key: IsZero = true")
	}
	if _, err := zero.MarshalText(); !errors.Is(err, kez.ErrInvalidKey) {
		t.Errorf("zero MarshalText = %v, want ErrInvalidKey", err)
	}
	if zero.Verify(kez.PurposeSigchain, []byte("m"), make([]byte, 64)) {
		t.Errorf("zero key verified an all-zero signature")
	}
}

func TestPublicKeyEqual(t *testing.T) {
	a := rfcKey(t).Public()
	a2, _ := kez.ParsePublicKeyHex(rfcPubHex)
	b := seedKey(t, strings.Repeat("01", 32)).Public()
	if !a.Equal(a2) || !a2.Equal(a) {
		t.Errorf("Equal of the same key = false")
	}
	if a.Equal(b) || b.Equal(a) {
		t.Errorf("Equal of different keys = true")
	}
	if a.Equal(kez.PublicKey{}) {
		t.Errorf("Equal(zero) = true")
	}
	if !(kez.PublicKey{}).Equal(kez.PublicKey{}) {
		t.Errorf("zero.Equal(zero) = false")
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"prefix only", "ed25519:"},
		{"no prefix", rfcPubHex},
		{"wrong prefix", "ed448:" + rfcPubHex},
		{"upper prefix", "ED25519:" + rfcPubHex},
		{"x25519 prefix", "x25519:" + rfcPubHex},
		{"space after prefix", "ed25519: " + rfcPubHex},
		{"trailing space", "ed25519:" + rfcPubHex + " "},
		{"trailing newline", "ed25519:" + rfcPubHex + "\n"},
		{"uppercase hex", "ed25519:" + strings.ToUpper(rfcPubHex)},
		{"one uppercase digit", "ed25519:D" + rfcPubHex[1:]},
		{"short", "ed25519:" + rfcPubHex[:62]},
		{"odd length", "ed25519:" + rfcPubHex[:63]},
		{"long", "ed25519:" + rfcPubHex + "00"},
		{"non-hex", "ed25519:" + rfcPubHex[:63] + "g"},
		{"non-hex unicode", "ed25519:" + rfcPubHex[:62] + "é"},
		{"base64 not hex", "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPaoiMlrwIaaPcHURo="},
		{"double prefix", "ed25519:ed25519:" + rfcPubHex},
		{"nkey", rfcKey(t).Public().NKey()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := kez.ParsePublicKey(tt.in)
			if !errors.Is(err, kez.ErrInvalidKey) {
				t.Fatalf("ParsePublicKey(%q) = %v, %v; want ErrInvalidKey", tt.in, k, err)
			}
			if !k.IsZero() {
				t.Errorf("ParsePublicKey(%q) returned a non-zero key with an error", tt.in)
			}
			if h := strings.TrimPrefix(tt.in, "ed25519:"); len(h) >= 8 && strings.Contains(err.Error(), h) {
				t.Errorf("ParsePublicKey error %q echoes the input", err)
			}
		})
	}
}

func TestParsePublicKeyHexErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"ed25519:" + rfcPubHex,
		strings.ToUpper(rfcPubHex),
		rfcPubHex[:62],
		rfcPubHex + "0",
		"zz" + rfcPubHex[2:],
		" " + rfcPubHex[1:],
	} {
		if _, err := kez.ParsePublicKeyHex(in); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(%q) = %v, want ErrInvalidKey", in, err)
		}
	}
	for _, n := range []int{0, 1, 31, 33, 64} {
		if _, err := kez.NewPublicKey(make([]byte, n)); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("NewPublicKey(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
	}
}

func TestParseNKeyErrors(t *testing.T) {
	pub := rfcKey(t).Public()
	raw := pub.Bytes()
	account, _ := nkeys.Encode(nkeys.PrefixByteAccount, raw)
	server, _ := nkeys.Encode(nkeys.PrefixByteServer, raw)
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, rfcKey(t).Seed())
	if err != nil {
		t.Fatal(err)
	}
	userSeed, _ := kp.Seed()
	good := pub.NKey()
	last := "A"
	if strings.HasSuffix(good, "A") {
		last = "B"
	}
	badCRC := good[:len(good)-1] + last // the last character is all checksum
	smallOrder, _ := nkeys.Encode(nkeys.PrefixByteUser, make([]byte, 32))

	for _, tt := range []struct{ name, in string }{
		{"empty", ""},
		{"account key", string(account)},
		{"server key", string(server)},
		{"user seed", string(userSeed)},
		{"bad checksum", badCRC},
		{"lower case", strings.ToLower(good)},
		{"truncated", good[:len(good)-2]},
		{"hex text", "ed25519:" + rfcPubHex},
		{"small-order key", string(smallOrder)},
	} {
		if tt.in == good {
			t.Fatalf("%s: test input equals the good key", tt.name)
		}
		if _, err := kez.ParseNKey(tt.in); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParseNKey(%s %q) = %v, want ErrInvalidKey", tt.name, tt.in, err)
		}
	}
}

// smallOrderHex are the canonical encodings of the eight points of small
// order on edwards25519 (the torsion subgroup), as listed in "Taming the
// many EdDSAs" (Chalkias et al., 2020) and libsodium's blocklist.
var smallOrderHex = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // (0, -1), order 2
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4
	"0000000000000000000000000000000000000000000000000000000000000080", // order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
}

// TestSmallOrderList checks smallOrderHex against the torsion subgroup
// computed here: the multiples of an order-8 point.
func TestSmallOrderList(t *testing.T) {
	g8, err := new(edwards25519.Point).SetBytes(mustHex(t, smallOrderHex[6]))
	if err != nil {
		t.Fatal(err)
	}
	var computed []string
	p := edwards25519.NewIdentityPoint()
	for i := 0; i < 8; i++ {
		computed = append(computed, hex.EncodeToString(p.Bytes()))
		p = new(edwards25519.Point).Add(p, g8)
	}
	if p.Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatalf("8·P is not the identity: P is not of order 8")
	}
	want := slices.Clone(smallOrderHex)
	slices.Sort(want)
	slices.Sort(computed)
	if !slices.Equal(computed, want) {
		t.Fatalf("torsion subgroup = %q, want %q", computed, want)
	}
}

func TestRefuseSmallOrder(t *testing.T) {
	for _, h := range smallOrderHex {
		if _, err := kez.ParsePublicKeyHex(h); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(%s) = %v, want ErrInvalidKey (small order)", h, err)
		}
		if _, err := kez.ParsePublicKey("ed25519:" + h); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKey(ed25519:%s) = %v, want ErrInvalidKey", h, err)
		}
		if _, err := kez.NewPublicKey(mustHex(t, h)); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("NewPublicKey(%s) = %v, want ErrInvalidKey", h, err)
		}
	}
	// crypto/ed25519 itself accepts them: the identity key "verifies" a
	// signature (R = identity, s = 0) for every message.
	identity := mustHex(t, smallOrderHex[0])
	sig := append(mustHex(t, smallOrderHex[0]), make([]byte, 32)...)
	if !ed25519.Verify(identity, []byte("any message"), sig) {
		t.Logf("note: crypto/ed25519 no longer accepts the identity key forgery")
	}
}

// TestMixedOrderAccepted documents that a prime-order key plus a torsion
// component (not itself of small order) is not refused: the design refuses
// only non-canonical and small-order encodings.
func TestMixedOrderAccepted(t *testing.T) {
	a, _ := new(edwards25519.Point).SetBytes(mustHex(t, rfcPubHex))
	t8, _ := new(edwards25519.Point).SetBytes(mustHex(t, smallOrderHex[4]))
	mixed := new(edwards25519.Point).Add(a, t8).Bytes()
	if _, err := kez.NewPublicKey(mixed); err != nil {
		t.Errorf("NewPublicKey(mixed-order point) = %v, want nil", err)
	}
}

// fieldP is 2^255 - 19.
var fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// encodeY returns the 32-byte little-endian encoding of y (which may be
// >= p, hence non-canonical) with the sign bit of x set if neg.
func encodeY(y *big.Int, neg bool) []byte {
	be := y.FillBytes(make([]byte, 32))
	slices.Reverse(be)
	if neg {
		be[31] |= 0x80
	}
	return be
}

func TestRefuseNonCanonical(t *testing.T) {
	// Fixed, well-known encodings.
	fixed := []struct{ name, hex string }{
		{"y = p (0), small order", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"y = p+1 (identity)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"identity with x sign bit set", "0100000000000000000000000000000000000000000000000000000000000080"},
		{"y = -1 with x sign bit set", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
		{"y = p+1 with sign bit", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
	}
	for _, tt := range fixed {
		if _, err := kez.ParsePublicKeyHex(tt.hex); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(%s) [%s] = %v, want ErrInvalidKey", tt.hex, tt.name, err)
		}
	}

	// Every y in [p, 2^255) names the same point as y-p. Where that point
	// is on the curve and of large order, its canonical encoding is a key
	// we accept and the alias must be refused as non-canonical.
	var accepted, aliased int
	for k := int64(0); k < 19; k++ {
		y := big.NewInt(k)
		for _, neg := range []bool{false, true} {
			canon := encodeY(y, neg)
			alias := encodeY(new(big.Int).Add(y, fieldP), neg)
			pt, err := new(edwards25519.Point).SetBytes(alias)
			if err != nil {
				continue // not on the curve
			}
			aliased++
			if _, err := kez.NewPublicKey(alias); !errors.Is(err, kez.ErrInvalidKey) {
				t.Errorf("NewPublicKey(%x) (y = p+%d) = %v, want ErrInvalidKey", alias, k, err)
			}
			isSmall := new(edwards25519.Point).MultByCofactor(pt).Equal(edwards25519.NewIdentityPoint()) == 1
			if !bytes.Equal(pt.Bytes(), canon) || isSmall {
				continue // x = 0 with the sign bit, or small order
			}
			got, err := kez.NewPublicKey(canon)
			if err != nil {
				t.Errorf("NewPublicKey(%x) (y = %d, canonical) = %v, want nil", canon, k, err)
				continue
			}
			accepted++
			// Go's ed25519 treats both encodings as the same point.
			if got.Hex() == hex.EncodeToString(alias) {
				t.Errorf("alias and canonical encoding have the same text")
			}
		}
	}
	if accepted == 0 || aliased == 0 {
		t.Fatalf("found %d aliased encodings, %d with a valid canonical twin; want some of each", aliased, accepted)
	}
	t.Logf("checked %d non-canonical encodings, %d with a valid canonical twin", aliased, accepted)
}

func TestRefuseNotOnCurve(t *testing.T) {
	var found int
	for y := int64(2); y < 64 && found < 8; y++ {
		enc := encodeY(big.NewInt(y), false)
		if _, err := new(edwards25519.Point).SetBytes(enc); err == nil {
			continue
		}
		found++
		if _, err := kez.NewPublicKey(enc); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("NewPublicKey(y = %d, not on the curve) = %v, want ErrInvalidKey", y, err)
		}
		if _, err := kez.ParsePublicKeyHex(hex.EncodeToString(enc)); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParsePublicKeyHex(y = %d, not on the curve) = %v, want ErrInvalidKey", y, err)
		}
	}
	if found == 0 {
		t.Fatal("found no off-curve y below 64")
	}
	// A fixed one: y = 2 is not on edwards25519.
	if _, err := kez.ParsePublicKeyHex("0200000000000000000000000000000000000000000000000000000000000000"); !errors.Is(err, kez.ErrInvalidKey) {
		t.Errorf("ParsePublicKeyHex(y = 2) = %v, want ErrInvalidKey", err)
	}
}

func TestNewPrivateKeyRFC8032(t *testing.T) {
	k := rfcKey(t)
	if got := k.Public().Hex(); got != rfcPubHex {
		t.Fatalf("public key = %s, want %s", got, rfcPubHex)
	}
	if got := hex.EncodeToString(k.Seed()); got != rfcSeedHex {
		t.Errorf("Seed() = %s, want %s", got, rfcSeedHex)
	}
	// The key pair is RFC 8032's: its raw signature of the empty message
	// is the RFC's (kez itself never signs raw).
	if got := hex.EncodeToString(rawSign(k, nil)); got != rfcSigHex {
		t.Errorf("raw signature of the empty message = %s, want %s", got, rfcSigHex)
	}
	// Seed returns a copy.
	s := k.Seed()
	s[0] ^= 1
	if hex.EncodeToString(k.Seed()) != rfcSeedHex {
		t.Errorf("modifying Seed() changed the key")
	}
}

func TestNewPrivateKeyErrors(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if k, err := kez.NewPrivateKey(make([]byte, n)); !errors.Is(err, kez.ErrInvalidKey) || k != nil {
			t.Errorf("NewPrivateKey(%d bytes) = %v, %v; want nil, ErrInvalidKey", n, k, err)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	seed := mustHex(t, rfcSeedHex)
	k, err := kez.GenerateKey(bytes.NewReader(seed))
	if err != nil || k.Public().Hex() != rfcPubHex {
		t.Fatalf("GenerateKey(fixed reader) = %v, %v", k, err)
	}
	if _, err := kez.GenerateKey(bytes.NewReader(seed[:10])); err == nil {
		t.Errorf("GenerateKey(short reader) = nil error")
	}
	a, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Public().Equal(b.Public()) {
		t.Errorf("two generated keys are equal")
	}
}

// rawSign is the plain ed25519 signature of msg by k, which kez keys do
// not make: tests use it for vectors and for signatures without context.
func rawSign(k *kez.PrivateKey, msg []byte) []byte {
	return ed25519.Sign(ed25519.NewKeyFromSeed(k.Seed()), msg)
}

func TestSignVerify(t *testing.T) {
	k := rfcKey(t)
	other := seedKey(t, strings.Repeat("42", 32))
	msg := []byte("hello")
	sig := k.Sign(kez.PurposeSigchain, msg)
	if len(sig) != ed25519.SignatureSize {
		t.Fatalf("len(sig) = %d", len(sig))
	}
	// Exactly ed25519 over the context, then the message.
	if want := rawSign(k, []byte("kez-sigchain-v1\x00hello")); !bytes.Equal(sig, want) {
		t.Errorf("Sign = %x, want ed25519 of context || msg %x", sig, want)
	}
	if !k.Public().Verify(kez.PurposeSigchain, msg, sig) {
		t.Errorf("Verify(own signature) = false")
	}
	if other.Public().Verify(kez.PurposeSigchain, msg, sig) {
		t.Errorf("Verify by another key = true")
	}
	if !k.Public().VerifyMessage(kez.PurposeSigchain, kez.PurposeSigchain.Message(msg), sig) {
		t.Errorf("VerifyMessage(own signature) = false")
	}
	for _, m := range []string{"hello", "kez-sigchain-v1\x00hellO", "kez-sigchain-v1\x00", "", "kez-sigchain-v1"} {
		if k.Public().VerifyMessage(kez.PurposeSigchain, []byte(m), sig) {
			t.Errorf("VerifyMessage(%q) = true", m)
		}
	}
	if k.Public().VerifyMessage(kez.PurposeMessageV2, kez.PurposeSigchain.Message(msg), sig) {
		t.Errorf("VerifyMessage for another purpose = true")
	}
	if k.Public().Verify(kez.PurposeSigchain, []byte("hellO"), sig) {
		t.Errorf("Verify(other message) = true")
	}
	if k.Public().Verify(kez.PurposeSigchain, msg, rawSign(k, msg)) {
		t.Errorf("Verify(raw signature without context) = true")
	}
	for i := range sig {
		bad := slices.Clone(sig)
		bad[i] ^= 0x01
		if k.Public().Verify(kez.PurposeSigchain, msg, bad) {
			t.Errorf("Verify(signature with byte %d flipped) = true", i)
		}
	}
	for _, n := range []int{0, 63, 65} {
		s := make([]byte, n)
		copy(s, sig)
		if k.Public().Verify(kez.PurposeSigchain, msg, s) {
			t.Errorf("Verify(%d-byte signature) = true", n)
		}
	}
}

// TestPurposesPrefixFree checks the rule that keeps purposes apart: no
// context is a prefix of another (so the signed bytes of two purposes
// can never be equal), each ends in NUL or newline and has neither
// before its end, and a signature for one purpose verifies for no other,
// even over the same bytes.
func TestPurposesPrefixFree(t *testing.T) {
	k := rfcKey(t)
	ps := kez.Purposes()
	if len(ps) < 6 {
		t.Fatalf("Purposes() = %v", ps)
	}
	for _, p := range ps {
		c := p.Context()
		if last := c[len(c)-1]; last != 0 && last != '\n' {
			t.Errorf("%s: context ends in %q", p, last)
		}
		if strings.ContainsAny(c[:len(c)-1], "\x00\n") {
			t.Errorf("%s: delimiter inside the context", p)
		}
		if !strings.HasPrefix(c, "kez-") || p.String() != c[:len(c)-1] {
			t.Errorf("%s: context %q", p, c)
		}
		for _, q := range ps {
			if p == q {
				continue
			}
			if strings.HasPrefix(q.Context(), c) {
				t.Errorf("context of %s is a prefix of %s's", p, q)
			}
			msg := []byte("the same bytes")
			if k.Public().Verify(q, msg, k.Sign(p, msg)) {
				t.Errorf("a signature for %s verifies for %s", p, q)
			}
			// Nor does any choice of message for q reproduce p's signed
			// bytes: q's context would have to start p's message.
			if k.Public().Verify(q, []byte(strings.TrimPrefix(p.Context()+"x", q.Context())), k.Sign(p, []byte("x"))) {
				t.Errorf("%s's signature of x verifies for %s", p, q)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Sign with an unknown purpose did not panic")
		}
	}()
	k.Sign(kez.Purpose(0), nil)
}

func TestX25519(t *testing.T) {
	for _, seedHex := range []string{rfcSeedHex, strings.Repeat("00", 32), strings.Repeat("ff", 32), strings.Repeat("42", 32)} {
		k := seedKey(t, seedHex)
		scalar := k.X25519()
		if len(scalar) != 32 || scalar[0]&7 != 0 || scalar[31]&0x80 != 0 || scalar[31]&0x40 == 0 {
			t.Errorf("seed %s…: X25519 scalar %x is not clamped", seedHex[:8], scalar)
		}
		priv, err := ecdh.X25519().NewPrivateKey(scalar)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := priv.PublicKey().Bytes(), k.Public().X25519(); !bytes.Equal(got, want) {
			t.Errorf("seed %s…: X25519(priv, basepoint) = %x, PublicKey.X25519() = %x", seedHex[:8], got, want)
		}
	}

	// Both sides of an exchange agree.
	a, b := rfcKey(t), seedKey(t, strings.Repeat("42", 32))
	ap, _ := ecdh.X25519().NewPrivateKey(a.X25519())
	bp, _ := ecdh.X25519().NewPrivateKey(b.X25519())
	bpub, _ := ecdh.X25519().NewPublicKey(b.Public().X25519())
	apub, _ := ecdh.X25519().NewPublicKey(a.Public().X25519())
	s1, err1 := ap.ECDH(bpub)
	s2, err2 := bp.ECDH(apub)
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Errorf("shared secrets differ: %x, %v; %x, %v", s1, err1, s2, err2)
	}
	// X25519 returns a copy.
	x := a.X25519()
	x[5] ^= 1
	if bytes.Equal(x, a.X25519()) {
		t.Errorf("modifying X25519() changed the key")
	}
}

func TestPrivateKeyNeverPrintsSeed(t *testing.T) {
	k := rfcKey(t)
	seed := k.Seed()
	forms := map[string]string{
		"String":  k.String(),
		"%v":      fmt.Sprintf("%v", k),
		"%+v":     fmt.Sprintf("%+v", k),
		"%s":      fmt.Sprintf("%s", k),
		"%#v":     fmt.Sprintf("%#v", k),
		"%x":      fmt.Sprintf("%x", k),
		"%d":      fmt.Sprintf("%d", k),
		"%v val":  fmt.Sprintf("%v", *k),
		"%#v val": fmt.Sprintf("%#v", *k),
		"%d val":  fmt.Sprintf("%d", *k),
		"error":   fmt.Errorf("wrap: %v", k).Error(),
	}
	// The seed in the forms fmt can print bytes in.
	secrets := []string{
		rfcSeedHex,
		strings.ToUpper(rfcSeedHex),
		fmt.Sprintf("%v", seed),
		fmt.Sprintf("%d", seed)[1:20],
		fmt.Sprintf("%#v", seed)[len("[]byte{"):][:30],
		fmt.Sprintf("%v", seed[:])[1:20],
	}
	for name, s := range forms {
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s form %q contains the seed (%q)", name, s, sec)
			}
		}
	}
	if want := "ed25519:" + rfcPubHex; !strings.Contains(k.String(), want) {
		t.Errorf("String() = %q, want it to name the public key", k.String())
	}
	if b, err := json.Marshal(k); err == nil && bytes.Contains(b, []byte(rfcSeedHex)) {
		t.Errorf("json.Marshal(private key) = %s contains the seed", b)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add("ed25519:" + rfcPubHex)
	f.Add(rfcPubHex)
	f.Add("ed25519:" + strings.ToUpper(rfcPubHex))
	f.Add("ed25519:" + smallOrderHex[0])
	f.Add("ed25519:eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	f.Add("ed25519:0200000000000000000000000000000000000000000000000000000000000000")
	f.Add("ed25519:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := kez.ParsePublicKey(s)
		if err != nil {
			if !errors.Is(err, kez.ErrInvalidKey) {
				t.Fatalf("ParsePublicKey(%q) = %v, want ErrInvalidKey", s, err)
			}
			if !k.IsZero() {
				t.Fatalf("ParsePublicKey(%q) returned a key with an error", s)
			}
			return
		}
		if k.String() != s {
			t.Fatalf("ParsePublicKey(%q).String() = %q, want the input", s, k.String())
		}
		again, err := kez.ParsePublicKey(k.String())
		if err != nil || !again.Equal(k) {
			t.Fatalf("re-parse of %q = %v, %v", k.String(), again, err)
		}
		if back, err := kez.ParseNKey(k.NKey()); err != nil || !back.Equal(k) {
			t.Fatalf("ParseNKey(NKey of %q) = %v, %v", s, back, err)
		}
		if len(k.X25519()) != 32 {
			t.Fatalf("X25519 of %q is not 32 bytes", s)
		}
	})
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestSeedText(t *testing.T) {
	k, err := kez.NewPrivateKey(bytes.Repeat([]byte{0xab}, 32))
	if err != nil {
		t.Fatal(err)
	}
	text := k.MarshalSeed()
	if want := "kez-seed-v1 " + strings.Repeat("ab", 32); string(text) != want {
		t.Fatalf("MarshalSeed = %q, want %q", text, want)
	}
	for _, in := range []string{string(text), string(text) + "\n", " \t" + string(text) + "\r\n", "kez-seed-v1 " + strings.Repeat("AB", 32)} {
		got, err := kez.ParseSeed([]byte(in))
		if err != nil || !got.Public().Equal(k.Public()) {
			t.Errorf("ParseSeed(%q) = %v, %v, want the key", in, got, err)
		}
	}
	secret := strings.Repeat("zz", 32)
	for _, in := range []string{"", "kez-seed-v1", strings.Repeat("ab", 32), "kez-seed-v2 " + strings.Repeat("ab", 32),
		"kez-seed-v1 " + strings.Repeat("ab", 31), "kez-seed-v1 " + secret, "kez-seed-v1  " + strings.Repeat("ab", 32)} {
		_, err := kez.ParseSeed([]byte(in))
		if !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParseSeed(%q) = %v, want ErrInvalidKey", in, err)
		}
		if err != nil && (strings.Contains(err.Error(), "zz") || strings.Contains(err.Error(), "abab")) {
			t.Errorf("ParseSeed error %q shows the input", err)
		}
	}
}

func FuzzParseSeed(f *testing.F) {
	f.Add([]byte("kez-seed-v1 " + strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte("kez-seed-v1 " + strings.Repeat("AB", 32)))
	f.Add([]byte("kez-seed-v1 "))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := kez.ParseSeed(b)
		if err != nil {
			if !errors.Is(err, kez.ErrInvalidKey) || k != nil {
				t.Fatalf("ParseSeed(%q) = %v, %v, want nil and ErrInvalidKey", b, k, err)
			}
			return
		}
		again, err := kez.ParseSeed(k.MarshalSeed())
		if err != nil || !again.Public().Equal(k.Public()) {
			t.Fatalf("ParseSeed(MarshalSeed()) = %v, %v", again, err)
		}
	})
}

func TestWipe(t *testing.T) {
	k := seedKey(t, strings.Repeat("42", 32))
	pub := k.Public()
	msg := []byte("before")
	if !pub.Verify(kez.PurposeSigchain, msg, k.Sign(kez.PurposeSigchain, msg)) {
		t.Fatal("signature before Wipe does not verify")
	}
	k.Wipe()
	if seed := k.Seed(); !bytes.Equal(seed, make([]byte, 32)) {
		t.Errorf("Seed() after Wipe = %x, want zeros", seed)
	}
	if !k.Public().Equal(pub) {
		t.Error("Wipe changed the public key")
	}
	// The private key is gone: what it signs now is no signature of pub.
	if pub.Verify(kez.PurposeSigchain, msg, k.Sign(kez.PurposeSigchain, msg)) {
		t.Error("a wiped key still makes valid signatures")
	}
	k.Wipe() // idempotent
}
