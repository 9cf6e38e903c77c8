package message_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

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
	f.Fuzz(func(t *testing.T, wire []byte) {
		e, err := message.Parse(wire)
		if err != nil {
			if !errors.Is(err, message.ErrMalformed) && !errors.Is(err, message.ErrTooLarge) {
				t.Fatalf("Parse error %v matches no sentinel", err)
			}
			return
		}
		// What parses re-encodes to a canonical form that parses to the
		// same envelope.
		canon, err := e.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed envelope: %v", err)
		}
		e2, err := message.Parse(canon)
		if err != nil {
			t.Fatalf("Parse(canonical) = %v", err)
		}
		canon2, _ := e2.Marshal()
		if !bytes.Equal(canon, canon2) {
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
	me, err := kez.NewPrivateKey(seed)
	if err != nil {
		f.Fatal(err)
	}
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
	if len(genuine) < 2 {
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
