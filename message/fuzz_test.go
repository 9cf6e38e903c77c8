package message_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

type fileVectors struct {
	Valid []struct {
		RecipientSeed string `json:"recipient_seed"`
		Sender        string `json:"sender"`
		Envelope      string `json:"envelope"`
	} `json:"valid"`
	Invalid []struct {
		Envelope string `json:"envelope"`
	} `json:"invalid"`
}

func readVectors(f *testing.F) fileVectors {
	f.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var v fileVectors
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	return v
}

func FuzzParse(f *testing.F) {
	v := readVectors(f)
	for _, c := range v.Valid {
		f.Add([]byte(c.Envelope))
	}
	for _, c := range v.Invalid {
		f.Add([]byte(c.Envelope))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"kc":"","v":2}`))
	// A parser with a key cache must answer as Parse does; the cache
	// holds the keys of earlier inputs.
	seed := make([]byte, 32)
	k, err := kez.NewPrivateKey(seed)
	if err != nil {
		f.Fatal(err)
	}
	cached := message.NewIdentity(k)
	f.Fuzz(func(t *testing.T, wire []byte) {
		e, err := message.Parse(wire)
		e2, err2 := cached.Parse(wire)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(e, e2) {
			t.Fatalf("Parse = %v, %v; Identity.Parse = %v, %v", e, err, e2, err2)
		}
		if err != nil {
			if !errors.Is(err, message.ErrMalformed) && !errors.Is(err, message.ErrTooLarge) {
				t.Fatalf("Parse error %v matches no sentinel", err)
			}
			return
		}
		if e.Version != message.Version && e.Version != message.Version1 {
			t.Fatalf("parsed version %d", e.Version)
		}
		// What parses re-encodes to a canonical form that parses to the
		// same envelope.
		canon, err := e.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed envelope: %v", err)
		}
		e3, err := message.Parse(canon)
		if err != nil {
			t.Fatalf("Parse(canonical) = %v", err)
		}
		canon2, _ := e3.Marshal()
		if e3.Version != e.Version || !bytes.Equal(canon, canon2) {
			t.Fatalf("canonical form is not stable:\n%s\n%s", canon, canon2)
		}
		if len(canon) > len(wire) {
			t.Fatalf("canonical form longer than the input")
		}
	})
}

// FuzzOpen mutates genuine envelopes from the vector file: whatever the
// fuzzer makes, Open must not panic and must accept only the genuine
// messages (in any JSON spelling), since only the sender can sign.
func FuzzOpen(f *testing.F) {
	v := readVectors(f)
	// All genuine envelopes for one recipient from one sender.
	first := v.Valid[0]
	seed, _ := hex.DecodeString(first.RecipientSeed)
	k, err := kez.NewPrivateKey(seed)
	if err != nil {
		f.Fatal(err)
	}
	me := message.NewIdentity(k)
	sender, err := kez.ParsePublicKey(first.Sender)
	if err != nil {
		f.Fatal(err)
	}
	genuine := map[string]bool{}
	for _, c := range v.Valid {
		if c.RecipientSeed == first.RecipientSeed && c.Sender == first.Sender {
			genuine[c.Envelope] = true
			f.Add([]byte(c.Envelope))
		}
	}
	if len(genuine) < 4 {
		f.Fatalf("only %d genuine envelopes", len(genuine))
	}
	for _, c := range v.Invalid {
		f.Add([]byte(c.Envelope))
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		e, err := message.Parse(wire)
		if err != nil {
			return
		}
		pt, err := e.Open(me, sender)
		if err != nil {
			if !pt.IsZero() {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		canon, _ := e.Marshal()
		if !genuine[string(canon)] {
			t.Fatalf("Open accepted a message the sender never signed:\n%s", canon)
		}
		if pt.Type() == "" {
			t.Fatal("opened plaintext without a type")
		}
	})
}

// FuzzSealOpen: whatever the plaintext and the time, a sealed message is
// v2, parses back to the same envelope, re-marshals to the same bytes and
// opens to the same plaintext; with any one byte of its wire form
// changed, it opens to nothing else.
func FuzzSealOpen(f *testing.F) {
	f.Add("hello, bob", int64(1767225600), uint16(10))
	f.Add("", int64(0), uint16(0))
	f.Add("héllo \u2028 \"q\" 😀", int64(1)<<40, uint16(300))
	alice, bob := testKey(f, "alice"), testKey(f, "bob")
	f.Fuzz(func(t *testing.T, body string, ts int64, at uint16) {
		if ts < 0 {
			ts = -(ts + 1)
		}
		pt := message.Text(body)
		e, wire, err := message.Seal(alice, bob.Public(), pt, time.Unix(ts, 0), nil)
		if errors.Is(err, message.ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Version != message.Version || e.Timestamp != ts {
			t.Fatalf("sealed version %d, ts %d", e.Version, e.Timestamp)
		}
		p, err := bob.Parse(wire)
		if err != nil {
			t.Fatalf("Parse(Seal) = %v", err)
		}
		if !reflect.DeepEqual(p, e) {
			t.Fatalf("Parse(Seal) = %+v, want %+v", p, e)
		}
		if again, _ := p.Marshal(); !bytes.Equal(again, wire) {
			t.Fatal("Marshal(Parse(Seal)) differs from the wire form")
		}
		got, err := p.Open(bob, alice.Public())
		if err != nil || !bytes.Equal(got.Raw(), pt.Raw()) {
			t.Fatalf("Open = %s, %v; want %s", got.Raw(), err, pt.Raw())
		}
		bad := bytes.Clone(wire)
		bad[int(at)%len(bad)] ^= 1
		if q, err := bob.Parse(bad); err == nil {
			if got, err := q.Open(bob, alice.Public()); err == nil && !bytes.Equal(got.Raw(), pt.Raw()) {
				t.Fatalf("a changed envelope opens to %s", got.Raw())
			}
		}
	})
}
