package message

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"kez.lat/kez"
	"kez.lat/kez/vectortest"
)

const vectorsPath = "testdata/vectors.json"

// vectorFile is the layout of testdata/vectors.json; docs/kez-msg-v1.md
// describes it for other implementations.
type vectorFile struct {
	Comment []string        `json:"comment"`
	Valid   []validVector   `json:"valid"`
	Invalid []invalidVector `json:"invalid"`
}

type validVector struct {
	Description     string `json:"description"`
	Version         int    `json:"v"`
	SenderSeed      string `json:"sender_seed"`      // hex, 32 bytes
	RecipientSeed   string `json:"recipient_seed"`   // hex, 32 bytes
	Sender          string `json:"sender"`           // ed25519:<hex>
	Recipient       string `json:"recipient"`        // ed25519:<hex>
	SenderX25519    string `json:"sender_x25519"`    // hex, Montgomery u of the sender's key
	RecipientX25519 string `json:"recipient_x25519"` // hex
	SenderScalar    string `json:"sender_scalar"`    // hex, SHA-512(seed)[0:32] clamped
	ID              string `json:"id"`               // base64
	Salt            string `json:"salt"`             // base64
	TS              int64  `json:"ts"`
	Plaintext       string `json:"plaintext"`            // the exact plaintext bytes (UTF-8 JSON)
	Shared          string `json:"shared"`               // hex, X25519 shared secret
	Key             string `json:"key"`                  // hex, HKDF output
	Header          string `json:"header,omitempty"`     // v1: the AEAD associated data (text)
	AD              string `json:"ad,omitempty"`         // v2: hex, the AEAD associated data
	KC              string `json:"kc,omitempty"`         // v2: hex, the key commitment
	Transcript      string `json:"transcript,omitempty"` // v2: hex, the signed bytes after the context
	Envelope        string `json:"envelope"`             // the exact wire bytes
	DedupKey        string `json:"dedup_key"`
}

type invalidVector struct {
	Description   string `json:"description"`
	RecipientSeed string `json:"recipient_seed"` // hex: who opens it
	Sender        string `json:"sender"`         // the pinned sender key
	Envelope      string `json:"envelope"`
	Error         string `json:"error"` // see errorCodes
}

// errorCodes names the outcome each invalid vector must produce.
var errorCodes = []struct {
	code string
	err  error
}{
	{"too_large", ErrTooLarge},
	{"not_for_me", ErrNotForMe},
	{"sender_mismatch", ErrSenderMismatch},
	{"bad_signature", kez.ErrBadSignature},
	{"decrypt", ErrDecrypt},
	{"malformed", ErrMalformed},
}

func errorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if err == nil {
		return "ok"
	}
	return "other: " + err.Error()
}

func vectorKey(name string) *kez.PrivateKey {
	seed := sha256.Sum256([]byte("kez-msg-v1 vector " + name))
	k, err := kez.NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
}

// fixedRand returns the id and salt bytes of v1 vector n, in the order
// Seal reads them.
func fixedRand(n int) *bytes.Reader {
	b := make([]byte, IDSize+SaltSize)
	for i := range b {
		b[i] = byte(n*64 + i)
	}
	return bytes.NewReader(b)
}

// fixedRand2 returns the id and salt bytes of v2 vector n.
func fixedRand2(n int) *bytes.Reader {
	id := sha256.Sum256(fmt.Appendf(nil, "kez-msg-v2 vector id %d", n))
	salt := sha256.Sum256(fmt.Appendf(nil, "kez-msg-v2 vector salt %d", n))
	return bytes.NewReader(append(id[:IDSize], salt[:]...))
}

// vectorTime is 2026-01-01T00:00:00Z.
var vectorTime = time.Unix(1767225600, 0)

func mustPlaintext(s string) Plaintext {
	p, err := NewPlaintext([]byte(s))
	if err != nil {
		panic(err)
	}
	return p
}

// sealVersion is Seal for either version: Seal itself makes only v2.
func sealVersion(v int, from *kez.PrivateKey, to kez.PublicKey, pt Plaintext, now time.Time, rand io.Reader) (Envelope, []byte, error) {
	id := NewIdentity(from)
	defer id.Close()
	if v == Version {
		return Seal(id, to, pt, now, rand)
	}
	e := Envelope{Version: v, From: from.Public(), To: to, Timestamp: now.Unix()}
	if _, err := io.ReadFull(rand, e.ID[:]); err != nil {
		return Envelope{}, nil, err
	}
	if _, err := io.ReadFull(rand, e.Salt[:]); err != nil {
		return Envelope{}, nil, err
	}
	wire, err := e.seal(id, pt)
	return e, wire, err
}

// resign signs e again as from, for vectors whose signature is genuine but
// whose content is not what Seal makes.
func resign(e *Envelope, from *kez.PrivateKey) {
	copy(e.Sig[:], from.Sign(e.format().purpose, e.signedMessage(e.associatedData())))
}

// shiftTS returns e with the last decimal digit of ts moved into the front
// of the salt, and every following field shifted by one byte into the
// next (salt into kc in v2, then into ct): the attack on the v1 signed
// bytes, which keeps them unchanged.
func shiftTS(e Envelope) Envelope {
	s := e
	s.Timestamp = e.Timestamp / 10
	s.Salt = [SaltSize]byte{byte('0' + e.Timestamp%10)}
	copy(s.Salt[1:], e.Salt[:SaltSize-1])
	carry := e.Salt[SaltSize-1]
	if e.Version != Version1 {
		s.Commitment = [CommitmentSize]byte{carry}
		copy(s.Commitment[1:], e.Commitment[:CommitmentSize-1])
		carry = e.Commitment[CommitmentSize-1]
	}
	s.Ciphertext = append([]byte{carry}, e.Ciphertext...)
	return s
}

// generateVectors builds the vector file; it is deterministic (ed25519
// signatures are, and the random bytes are fixed).
func generateVectors() (vectorFile, error) {
	alice, bob, carol := vectorKey("alice"), vectorKey("bob"), vectorKey("carol")
	f := vectorFile{Comment: []string{
		"kez-msg-v2 and kez-msg-v1 test vectors, see docs/kez-msg-v2.md and docs/kez-msg-v1.md.",
		"Generated by message/vectors_test.go (go test ./message -run TestVectorsRegenerate -update); checked independently by message/testdata/check_vectors.py.",
		"valid: seal (version v) with the given id, salt and ts and get exactly envelope; open it as recipient with sender pinned and get exactly plaintext.",
		"invalid: recipient opens envelope with sender pinned; it must fail with error (malformed, not_for_me, sender_mismatch, bad_signature, decrypt).",
		"Not in this file: an envelope longer than 65536 bytes must be refused before parsing.",
	}}
	cases := []struct {
		desc     string
		from, to *kez.PrivateKey
		pt       Plaintext
	}{
		{"text message", alice, bob, Text("hello, bob")},
		{"text with escapes and non-ASCII", bob, alice, Text("héllo <b>&</b> \"quoted\"\\\n\ttab 😀 \u2028")},
		{"empty text", alice, bob, Text("")},
		{"unknown type, preserved", alice, bob, mustPlaintext(`{"type":"reaction","emoji":"👍","extra":{"n":[1,2]}}`)},
		{"text with an extra member", bob, alice, mustPlaintext(`{"type":"text","body":"hi","reply_to":"abc"}`)},
		{"note to self", alice, alice, Text("remember the milk")},
	}
	type sealed struct {
		v    int
		desc string
		from *kez.PrivateKey
		to   *kez.PrivateKey
		pt   Plaintext
		ts   time.Time
		rand io.Reader
	}
	var all []sealed
	for i, c := range cases {
		all = append(all, sealed{Version1, c.desc, c.from, c.to, c.pt, vectorTime.Add(time.Duration(i) * time.Minute), fixedRand(i)})
	}
	for i, c := range cases {
		all = append(all, sealed{Version, c.desc, c.from, c.to, c.pt, vectorTime.Add(time.Duration(i) * time.Minute), fixedRand2(i)})
	}
	all = append(all,
		sealed{Version, "ts 0", alice, bob, Text("at the epoch"), time.Unix(0, 0), fixedRand2(len(cases))},
		sealed{Version, "ts above 2^32", bob, alice, Text("far future"), time.Unix(1<<40+5, 0), fixedRand2(len(cases) + 1)})
	envs := map[int][]Envelope{}
	for _, c := range all {
		e, wire, err := sealVersion(c.v, c.from, c.to.Public(), c.pt, c.ts, c.rand)
		if err != nil {
			return vectorFile{}, fmt.Errorf("case %q: %w", c.desc, err)
		}
		envs[c.v] = append(envs[c.v], e)
		shared, err := curve25519.X25519(c.from.X25519(), c.to.Public().X25519())
		if err != nil {
			return vectorFile{}, err
		}
		key, err := refKey(c.from.X25519(), c.to.Public().X25519(), e.Salt[:], e.keyInfo())
		if err != nil {
			return vectorFile{}, err
		}
		v := validVector{
			Description:     c.desc,
			Version:         c.v,
			SenderSeed:      hex.EncodeToString(c.from.Seed()),
			RecipientSeed:   hex.EncodeToString(c.to.Seed()),
			Sender:          c.from.Public().String(),
			Recipient:       c.to.Public().String(),
			SenderX25519:    hex.EncodeToString(c.from.Public().X25519()),
			RecipientX25519: hex.EncodeToString(c.to.Public().X25519()),
			SenderScalar:    hex.EncodeToString(c.from.X25519()),
			ID:              e.ID.String(),
			Salt:            b64.EncodeToString(e.Salt[:]),
			TS:              e.Timestamp,
			Plaintext:       string(c.pt.Raw()),
			Shared:          hex.EncodeToString(shared),
			Key:             hex.EncodeToString(key),
			Envelope:        string(wire),
			DedupKey:        e.DedupKey(),
		}
		if c.v == Version1 {
			v.Header = string(e.associatedData())
		} else {
			v.AD = hex.EncodeToString(e.associatedData())
			v.KC = hex.EncodeToString(e.Commitment[:])
			v.Transcript = hex.EncodeToString(e.signedMessage(e.associatedData()))
		}
		f.Valid = append(f.Valid, v)
	}

	bobSeed, carolSeed := hex.EncodeToString(bob.Seed()), hex.EncodeToString(carol.Seed())
	alicePub := alice.Public().String()
	add := func(desc, seed, sender, wire, code string) {
		f.Invalid = append(f.Invalid, invalidVector{desc, seed, sender, wire, code})
	}
	marshal := func(e Envelope) string {
		w, err := e.Marshal()
		if err != nil {
			panic(err)
		}
		return string(w)
	}
	// Both versions: alice -> bob, the first valid vector of each.
	for _, v := range []int{Version1, Version} {
		base := envs[v][0]
		baseWire := marshal(base)
		pre := ""
		if v == Version {
			pre = "v2: "
		}
		tamper := func(desc string, change func(e *Envelope)) {
			e := base
			e.Ciphertext = bytes.Clone(base.Ciphertext)
			change(&e)
			add(pre+desc, bobSeed, alicePub, marshal(e), "bad_signature")
		}
		tamper("id changed", func(e *Envelope) { e.ID[15] ^= 1 })
		tamper("ts changed", func(e *Envelope) { e.Timestamp++ })
		tamper("salt changed", func(e *Envelope) { e.Salt[0] ^= 1 })
		if v == Version {
			tamper("kc changed", func(e *Envelope) { e.Commitment[0] ^= 1 })
		}
		tamper("ct changed", func(e *Envelope) { e.Ciphertext[0] ^= 1 })
		tamper("ct truncated", func(e *Envelope) { e.Ciphertext = e.Ciphertext[:len(e.Ciphertext)-1] })
		tamper("tag changed", func(e *Envelope) { e.Ciphertext[len(e.Ciphertext)-1] ^= 0x80 })
		tamper("sig changed", func(e *Envelope) { e.Sig[5] ^= 1 })
		{
			e := base
			e.From = carol.Public()
			add(pre+"from changed, the new sender pinned", bobSeed, carol.Public().String(), marshal(e), "bad_signature")
			add(pre+"from changed, the real sender pinned", bobSeed, alicePub, marshal(e), "sender_mismatch")
			e = base
			e.To = carol.Public()
			add(pre+"to changed to the opener", carolSeed, alicePub, marshal(e), "bad_signature")
		}
		add(pre+"addressed to someone else", carolSeed, alicePub, baseWire, "not_for_me")
		add(pre+"from someone other than the pinned key", bobSeed, carol.Public().String(), baseWire, "sender_mismatch")
		{
			// Signed by the sender, but encrypted with another header as
			// associated data: the signature verifies, the AEAD fails.
			e := base
			other := base
			other.Timestamp++
			key, _ := refKey(alice.X25519(), bob.Public().X25519(), e.Salt[:], e.keyInfo())
			aead, _ := chacha20poly1305.New(key)
			e.Ciphertext = aead.Seal(nil, zeroNonce[:], Text("hello, bob").raw, other.associatedData())
			resign(&e, alice)
			add(pre+"signed, but sealed under another header", bobSeed, alicePub, marshal(e), "decrypt")
			// Signed and decrypts, but the plaintext has no type.
			e = base
			id := NewIdentity(alice)
			w, err := e.seal(id, Plaintext{raw: []byte(`{"body":"no type"}`)})
			id.Close()
			if err != nil {
				return vectorFile{}, err
			}
			add(pre+"plaintext without a type", bobSeed, alicePub, string(w), "malformed")
		}
		// The v1 attack: the signed bytes stay the same in v1, so the
		// signature verifies and only the AEAD refuses; in v2 every field
		// has its place and the signature fails.
		shifted := shiftTS(base)
		if v == Version1 {
			add("ts digit shifted into the salt: same signed bytes, valid signature", bobSeed, alicePub, marshal(shifted), "decrypt")
		} else {
			add(pre+"ts digit shifted into the salt, salt into kc, kc into ct", bobSeed, alicePub, marshal(shifted), "bad_signature")
		}
	}

	// v2 only.
	base, baseWire := envs[Version][0], f.Valid[len(cases)].Envelope
	v1Wire := f.Valid[0].Envelope
	{
		// The sender signs a kc that is not its key's: the recipient
		// refuses before decrypting.
		e := base
		e.Commitment[31] ^= 1
		resign(&e, alice)
		add("v2: wrong kc, signed", bobSeed, alicePub, marshal(e), "decrypt")
		// Relabelled: v2 as v1 without kc (v1 signature check).
		e = base
		e.Version, e.Commitment = Version1, [CommitmentSize]byte{}
		add("v2 relabelled v1, kc dropped", bobSeed, alicePub, marshal(e), "bad_signature")
		// v1 as v2, with the kc of its key.
		e = envs[Version1][0]
		key, _ := refKey(alice.X25519(), bob.Public().X25519(), e.Salt[:], e.keyInfo())
		e.Version, e.Commitment = Version, keyCommitment(key)
		add("v1 relabelled v2, kc of its key added", bobSeed, alicePub, marshal(e), "bad_signature")
	}
	malformed := func(desc, wire string) { add(desc, bobSeed, alicePub, wire, "malformed") }
	malformed("v2 relabelled v1, kc kept", strings.Replace(baseWire, `{"v":2,`, `{"v":1,`, 1))
	malformed("v1 relabelled v2, no kc", strings.Replace(v1Wire, `{"v":1,`, `{"v":2,`, 1))
	kc := b64.EncodeToString(base.Commitment[:])
	malformed("v2: kc missing", strings.Replace(baseWire, `"kc":"`+kc+`",`, "", 1))
	malformed("v2: kc short", strings.Replace(baseWire, kc, b64.EncodeToString(base.Commitment[:31]), 1))
	malformed("v2: kc repeated", strings.Replace(baseWire, `"kc":`, `"kc":"`+kc+`","kc":`, 1))
	malformed("v2: kc without padding", strings.Replace(baseWire, kc, strings.TrimRight(kc, "="), 1))
	malformed("version 3", strings.Replace(baseWire, `{"v":2,`, `{"v":3,`, 1))
	malformed("version 0", strings.Replace(baseWire, `{"v":2,`, `{"v":0,`, 1))
	malformed("v2: ts with a fraction", strings.Replace(baseWire, `"ts":1767225600,`, `"ts":1767225600.0,`, 1))

	// v1 only: the JSON rules, shared by both versions.
	baseWire = v1Wire
	base = envs[Version1][0]
	id := base.ID.String()
	malformed("unknown member", strings.Replace(baseWire, `{"v":1,`, `{"v":1,"x":1,`, 1))
	malformed("repeated member", strings.Replace(baseWire, `{"v":1,`, `{"v":1,"v":1,`, 1))
	malformed("member name in another case", strings.Replace(baseWire, `"from":`, `"From":`, 1))
	malformed("ts with a fraction", strings.Replace(baseWire, `"ts":1767225600,`, `"ts":1767225600.0,`, 1))
	malformed("ts negative", strings.Replace(baseWire, `"ts":1767225600,`, `"ts":-1767225600,`, 1))
	malformed("ts as a string", strings.Replace(baseWire, `"ts":1767225600,`, `"ts":"1767225600",`, 1))
	lax := []byte(id)
	lax[21] = b64Alphabet[strings.IndexByte(b64Alphabet, id[21])^1] // flip a padding bit
	malformed("id with non-zero padding bits", strings.Replace(baseWire, id, string(lax), 1))
	malformed("id with an escaped newline", strings.Replace(baseWire, id, id[:8]+`\n`+id[8:], 1))
	malformed("id without padding", strings.Replace(baseWire, id, strings.TrimRight(id, "="), 1))
	malformed("from in upper-case hex", strings.Replace(baseWire, alicePub, "ed25519:"+strings.ToUpper(alice.Public().Hex()), 1))
	malformed("sig missing", baseWire[:strings.Index(baseWire, `,"sig":`)]+"}")
	malformed("data after the object", baseWire+"{}")

	return f, nil
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// TestVectorsRegenerate checks that the generator reproduces the committed
// file byte for byte; with -update it rewrites the file.
func TestVectorsRegenerate(t *testing.T) {
	f, err := generateVectors()
	if err != nil {
		t.Fatal(err)
	}
	vectortest.Check(t, vectorsPath, vectortest.JSON(t, f, false))
}

// TestVectorsFile checks every vector of the committed file independently
// of the generator: intermediate values, exact envelope bytes, outcomes.
func TestVectorsFile(t *testing.T) {
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f vectorFile
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	versions := map[int]int{}
	for _, v := range f.Valid {
		versions[v.Version]++
	}
	if versions[Version1] < 5 || versions[Version] < 5 || len(f.Invalid) < 40 {
		t.Fatalf("only %v valid (by version) and %d invalid vectors", versions, len(f.Invalid))
	}
	for _, v := range f.Valid {
		t.Run("valid/"+v.Description, func(t *testing.T) {
			t.Parallel()
			from, to := seedKey(t, v.SenderSeed), seedKey(t, v.RecipientSeed)
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %s, want %s", what, got, want)
				}
			}
			check("sender", from.Public().String(), v.Sender)
			check("recipient", to.Public().String(), v.Recipient)
			check("sender x25519", hex.EncodeToString(from.Public().X25519()), v.SenderX25519)
			check("recipient x25519", hex.EncodeToString(to.Public().X25519()), v.RecipientX25519)
			check("sender scalar", hex.EncodeToString(from.X25519()), v.SenderScalar)
			// The sender scalar times the base point is the sender's u.
			u, _ := curve25519.X25519(from.X25519(), curve25519.Basepoint)
			check("scalar * base", hex.EncodeToString(u), v.SenderX25519)
			shared, err := curve25519.X25519(to.X25519(), from.Public().X25519())
			if err != nil {
				t.Fatal(err)
			}
			check("shared", hex.EncodeToString(shared), v.Shared)
			id, _ := base64.StdEncoding.DecodeString(v.ID)
			salt, _ := base64.StdEncoding.DecodeString(v.Salt)
			if v.Version != Version && v.Version != Version1 {
				t.Fatalf("version %d", v.Version)
			}
			info := keyInfo(formats[v.Version].label, from.Public(), to.Public())
			key, err := refKey(to.X25519(), from.Public().X25519(), salt, info)
			if err != nil {
				t.Fatal(err)
			}
			check("key", hex.EncodeToString(key), v.Key)
			// The cached shared secrets, either side, give the same key.
			fromID, toID := NewIdentity(from), NewIdentity(to)
			defer fromID.Close()
			defer toID.Close()
			for range 2 {
				k1, err1 := toID.deriveKey(from.Public(), salt, info)
				k2, err2 := fromID.deriveKey(to.Public(), salt, info)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				check("key (recipient, cached)", hex.EncodeToString(k1), v.Key)
				check("key (sender, cached)", hex.EncodeToString(k2), v.Key)
			}

			pt, err := NewPlaintext([]byte(v.Plaintext))
			if err != nil {
				t.Fatal(err)
			}
			e, wire, err := sealVersion(v.Version, from, to.Public(), pt, time.Unix(v.TS, 0), bytes.NewReader(append(id, salt...)))
			if err != nil {
				t.Fatal(err)
			}
			ad := e.associatedData()
			if v.Version == Version1 {
				check("header", string(ad), v.Header)
			} else {
				check("ad", hex.EncodeToString(ad), v.AD)
				kc := keyCommitment(key)
				check("kc", hex.EncodeToString(kc[:]), v.KC)
				check("transcript", hex.EncodeToString(e.signedMessage(ad)), v.Transcript)
			}
			check("envelope", string(wire), v.Envelope)
			check("dedup key", e.DedupKey(), v.DedupKey)

			for _, parse := range []func([]byte) (Envelope, error){Parse, toID.Parse} {
				parsed, err := parse([]byte(v.Envelope))
				if err != nil {
					t.Fatal(err)
				}
				if parsed.Version != v.Version {
					t.Errorf("parsed version %d", parsed.Version)
				}
				got, err := parsed.Open(toID, from.Public())
				if err != nil {
					t.Fatal(err)
				}
				check("plaintext", string(got.Raw()), v.Plaintext)
			}
		})
	}
	for _, v := range f.Invalid {
		t.Run("invalid/"+v.Description, func(t *testing.T) {
			t.Parallel()
			me := NewIdentity(seedKey(t, v.RecipientSeed))
			defer me.Close()
			sender, err := kez.ParsePublicKey(v.Sender)
			if err != nil {
				t.Fatal(err)
			}
			e, err := me.Parse([]byte(v.Envelope))
			var pt Plaintext
			if err == nil {
				pt, err = e.Open(me, sender)
			}
			if got := errorCode(err); got != v.Error {
				t.Errorf("outcome %s (%v), want %s", got, err, v.Error)
			}
			if !pt.IsZero() {
				t.Error("plaintext returned with an error")
			}
		})
	}
}

func seedKey(t testing.TB, h string) *kez.PrivateKey {
	t.Helper()
	seed, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kez.NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVectorsPython runs testdata/check_vectors.py, an independent
// implementation with the Python cryptography package, over the vector
// file: it recomputes every valid vector byte for byte. Without python3
// and the package, the test skips and says how to get them.
func TestVectorsPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found; the independent check of the vectors needs python3 with the cryptography package (apt-get install python3-cryptography)")
	}
	if err := exec.Command(py, "-c", "import cryptography").Run(); err != nil {
		t.Skip("python3 has no cryptography package; apt-get install python3-cryptography (or pip install cryptography) runs the independent check of the vectors")
	}
	out, err := exec.Command(py, "testdata/check_vectors.py", vectorsPath).CombinedOutput()
	if err != nil {
		t.Fatalf("check_vectors.py: %v\n%s", err, out)
	}
	// The script checked every valid vector, not fewer.
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	n := map[int]int{}
	for _, v := range f.Valid {
		n[v.Version]++
	}
	want := fmt.Sprintf("checked %d v2 and %d v1 valid vectors", n[Version], n[Version1])
	if !strings.Contains(string(out), want) {
		t.Fatalf("check_vectors.py did not report %q:\n%s", want, out)
	}
}
