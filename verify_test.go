package kez_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"slices"
	"testing"

	"filippo.io/edwards25519"

	"kez.lat/kez"
)

// The group order L, little-endian.
var orderL = [32]byte{
	0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
}

// addL returns sig with L added to its s: the same scalar, not canonical.
func addL(sig []byte) []byte {
	out := slices.Clone(sig)
	carry := 0
	for i := range 32 {
		v := int(out[32+i]) + int(orderL[i]) + carry
		out[32+i], carry = byte(v), v>>8
	}
	return out
}

// signWithR signs m (the message as signed, context included) with k,
// its R the encoding enc of a point whose discrete log (up to a part of
// small order) is r: s = r + H(R || A || m)·a.
func signWithR(t *testing.T, k *kez.PrivateKey, enc [32]byte, r *edwards25519.Scalar, m []byte) []byte {
	t.Helper()
	h := sha512.Sum512(k.Seed())
	a, err := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	d := sha512.New()
	d.Write(enc[:])
	d.Write(k.Public().Bytes())
	d.Write(m)
	c, err := new(edwards25519.Scalar).SetUniformBytes(d.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return append(enc[:], new(edwards25519.Scalar).MultiplyAdd(c, a, r).Bytes()...)
}

// agree checks that k's Verify answers as crypto/ed25519 does, and says
// what both answered.
func agree(t *testing.T, k kez.PublicKey, p kez.Purpose, msg, sig []byte) bool {
	t.Helper()
	want := ed25519.Verify(k.Bytes(), p.Message(msg), sig)
	if got := k.Verify(p, msg, sig); got != want {
		t.Fatalf("Verify(%x) = %v, crypto/ed25519 says %v", sig, got, want)
	}
	return want
}

// TestVerifyEdgeCases: the signatures that set verifiers apart get
// crypto/ed25519's answers.
func TestVerifyEdgeCases(t *testing.T) {
	k := rfcKey(t)
	p, msg := kez.PurposeMessageV2, []byte("edge")
	sig := k.Sign(p, msg)
	if !agree(t, k.Public(), p, msg, sig) {
		t.Fatal("own signature refused")
	}
	if agree(t, k.Public(), p, msg, addL(sig)) {
		t.Error("s + L accepted")
	}
	zero := edwards25519.NewScalar()
	identity := [32]byte{1}
	if !agree(t, k.Public(), p, msg, signWithR(t, k, identity, zero, p.Message(msg))) {
		t.Error("R of small order, canonical, refused (crypto/ed25519 accepts it)")
	}
	// R = rB + T, T of order 8: cofactored verifiers accept it,
	// crypto/ed25519 does not.
	torsion, err := new(edwards25519.Point).SetBytes(mustHex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
	if err != nil || torsion.Equal(edwards25519.NewIdentityPoint()) == 1 ||
		new(edwards25519.Point).MultByCofactor(torsion).Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatal("not a point of small order")
	}
	rh := sha512.Sum512([]byte("r"))
	r, _ := new(edwards25519.Scalar).SetUniformBytes(rh[:])
	var mixed [32]byte
	copy(mixed[:], new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(r), torsion).Bytes())
	if agree(t, k.Public(), p, msg, signWithR(t, k, mixed, r, p.Message(msg))) {
		t.Error("R with a part of small order accepted (a cofactored check)")
	}
	// The identity again with y = 1 + p, a non-canonical encoding.
	var nonCanonical [32]byte
	for i := range nonCanonical {
		nonCanonical[i] = 0xff
	}
	nonCanonical[0], nonCanonical[31] = 0xee, 0x7f
	if agree(t, k.Public(), p, msg, signWithR(t, k, nonCanonical, zero, p.Message(msg))) {
		t.Error("non-canonical R accepted")
	}
}

// TestVerifyMixedOrderKey: a key with a part of small order (A = aB + T)
// passes NewPublicKey, anyone may register one, and it is where a
// cofactored check or wrong tables would show: every signature made with
// a, with R = rB - jT for each multiple jT of T, gets crypto/ed25519's
// answer (some verify, some do not).
func TestVerifyMixedOrderKey(t *testing.T) {
	torsion, err := new(edwards25519.Point).SetBytes(mustHex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
	if err != nil {
		t.Fatal(err)
	}
	scalar := func(label string, i int) *edwards25519.Scalar {
		h := sha512.Sum512([]byte(label + string(rune('a'+i))))
		s, _ := new(edwards25519.Scalar).SetUniformBytes(h[:])
		return s
	}
	var accepted, refused int
	for i := range 4 {
		a := scalar("a", i)
		A := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(a), torsion)
		key, err := kez.NewPublicKey(A.Bytes())
		if err != nil {
			t.Fatalf("a key of mixed order refused: %v", err)
		}
		p, msg := kez.PurposeSigchain, []byte{byte(i)}
		m := p.Message(msg)
		jT := edwards25519.NewIdentityPoint()
		for j := range 8 {
			r := scalar("r", i*8+j)
			R := new(edwards25519.Point).Subtract(new(edwards25519.Point).ScalarBaseMult(r), jT)
			d := sha512.New()
			d.Write(R.Bytes())
			d.Write(key.Bytes())
			d.Write(m)
			c, _ := new(edwards25519.Scalar).SetUniformBytes(d.Sum(nil))
			sig := append(R.Bytes(), new(edwards25519.Scalar).MultiplyAdd(c, a, r).Bytes()...)
			if agree(t, key, p, msg, sig) {
				accepted++
			} else {
				refused++
			}
			jT.Add(jT, torsion)
		}
	}
	if accepted == 0 || refused == 0 {
		t.Errorf("%d accepted, %d refused: the cases do not tell the checks apart", accepted, refused)
	}
}

// TestVerifyZeroKey: the zero key verifies nothing, though it is a point
// of small order for which crypto/ed25519 takes many signatures: R the
// identity and s = 0 verify for about one message in four.
func TestVerifyZeroKey(t *testing.T) {
	var zero kez.PublicKey
	sig := make([]byte, 64)
	sig[0] = 1
	forged := 0
	for i := range 64 {
		msg := []byte{byte(i)}
		if ed25519.Verify(zero.Bytes(), kez.PurposeSigchain.Message(msg), sig) {
			forged++
		}
		if zero.Verify(kez.PurposeSigchain, msg, sig) {
			t.Errorf("the zero key verified a signature of %x", msg)
		}
	}
	if forged == 0 {
		t.Error("crypto/ed25519 took none of the signatures: the case shows nothing")
	}
}

// FuzzVerifyAgrees: for any key, message and signature, Verify answers as
// crypto/ed25519 does, and Sign makes crypto/ed25519's signature.
func FuzzVerifyAgrees(f *testing.F) {
	f.Add([]byte("seed"), []byte("message"), []byte{}, uint16(0))
	f.Add([]byte("another"), []byte{}, make([]byte, 64), uint16(511))
	f.Fuzz(func(t *testing.T, seed, msg, sig []byte, flip uint16) {
		s := sha256.Sum256(seed)
		k, err := kez.NewPrivateKey(s[:])
		if err != nil {
			t.Skip() // a seed whose key the entry checks refuse
		}
		p := kez.Purposes()[int(flip)%len(kez.Purposes())]
		good := k.Sign(p, msg)
		if want := ed25519.Sign(ed25519.NewKeyFromSeed(s[:]), p.Message(msg)); !slices.Equal(good, want) {
			t.Fatalf("Sign = %x, crypto/ed25519 signs %x", good, want)
		}
		flipped := slices.Clone(good)
		flipped[int(flip)%512/8] ^= 1 << (flip % 8)
		agree(t, k.Public(), p, msg, good)
		agree(t, k.Public(), p, msg, flipped)
		agree(t, k.Public(), p, msg, addL(good))
		agree(t, k.Public(), p, msg, sig)
	})
}
