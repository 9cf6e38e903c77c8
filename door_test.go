package kez_test

import (
	"encoding/json"
	"errors"
	"testing"

	"kez.lat/kez"
)

func TestParseDoorRequests(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	h := k.Public().Hex()
	for _, tt := range []struct {
		body  string
		after uint64
		ok    bool
	}{
		{``, 0, true},
		{`{}`, 0, true},
		{`{"after":12}`, 12, true},
		{` {"after":0} `, 0, true},
		{`{"after":-1}`, 0, false},
		{`{"after":1.5}`, 0, false},
		{`{"after":"1"}`, 0, false},
		{`{"after":1,"after":2}`, 0, false},
		{`{"After":1}`, 0, false},
		{`{"after":1,"max":5}`, 0, false},
		{`[]`, 0, false},
		{`{"after":{"x":1}}`, 0, false},
	} {
		r, err := kez.ParseReadRequest([]byte(tt.body))
		if (err == nil) != tt.ok || (err == nil && r.After != tt.after) || (err != nil && !errors.Is(err, kez.ErrDoorRequest)) {
			t.Errorf("ParseReadRequest(%s) = %+v, %v", tt.body, r, err)
		}
	}
	for _, tt := range []struct {
		body string
		ok   bool
	}{
		{`{"sender":"` + h + `","seq":3}`, true},
		{`{"sender":"` + h + `","seq":0}`, false},
		{`{"sender":"` + h + `"}`, false},
		{`{"seq":3}`, false},
		{`{"sender":"ed25519:` + h + `","seq":3}`, false},
		{`{"sender":"` + h[:62] + `","seq":3}`, false},
		{`{"sender":"` + h + `","seq":3,"x":1}`, false},
		{`{"sender":"` + h + `","seq":3,"seq":4}`, false},
		{``, false},
	} {
		r, sender, err := kez.ParseAckRequest([]byte(tt.body))
		if (err == nil) != tt.ok || (err == nil && (!sender.Equal(k.Public()) || r.Seq != 3)) {
			t.Errorf("ParseAckRequest(%s) = %+v, %v, %v", tt.body, r, sender, err)
		}
	}
}

// FuzzParseDoorRequests: the door's request parsers take any bytes a user
// sends without panicking, refuse with ErrDoorRequest, and accept only
// what round-trips through their JSON form.
func FuzzParseDoorRequests(f *testing.F) {
	k, _ := kez.GenerateKey(nil)
	f.Add([]byte(`{"after":12}`))
	f.Add([]byte(`{"sender":"` + k.Public().Hex() + `","seq":3}`))
	f.Add([]byte(`{"after":1,"after":2}`))
	f.Add([]byte("{\"sender\":\"\xff\",\"seq\":1}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := kez.ParseReadRequest(b); err != nil {
			if !errors.Is(err, kez.ErrDoorRequest) {
				t.Fatalf("read request error %v without the sentinel", err)
			}
		} else {
			again, _ := json.Marshal(r)
			if r2, err := kez.ParseReadRequest(again); err != nil || r2 != r {
				t.Fatalf("read request %q does not round-trip: %v", b, err)
			}
		}
		if r, sender, err := kez.ParseAckRequest(b); err != nil {
			if !errors.Is(err, kez.ErrDoorRequest) {
				t.Fatalf("ack request error %v without the sentinel", err)
			}
		} else {
			again, _ := json.Marshal(r)
			if r2, s2, err := kez.ParseAckRequest(again); err != nil || r2 != r || !s2.Equal(sender) || r.Seq == 0 {
				t.Fatalf("ack request %q does not round-trip: %v", b, err)
			}
		}
	})
}

// TestInboxSenderHex: the door's reading of its own inbox subjects takes
// the sender's token only from kez.inbox.<to>.<from> with 64 lowercase
// hex characters, and agrees with InboxSender on every valid key.
func TestInboxSenderHex(t *testing.T) {
	a, _ := kez.GenerateKey(nil)
	b, _ := kez.GenerateKey(nil)
	subject := kez.InboxMsgSubject(a.Public(), b.Public())
	if h, ok := kez.InboxSenderHex(subject); !ok || h != b.Public().Hex() {
		t.Fatalf("InboxSenderHex(%s) = %q, %v", subject, h, ok)
	}
	if k, err := kez.InboxSender(subject); err != nil || !k.Equal(b.Public()) {
		t.Fatalf("InboxSender(%s) = %v, %v", subject, k, err)
	}
	h := b.Public().Hex()
	for _, s := range []string{
		"kez.inbox." + a.Public().Hex(),
		"kez.live." + a.Public().Hex() + "." + h,
		"kez.inbox." + a.Public().Hex() + "." + h + ".x",
		"kez.inbox." + a.Public().Hex() + "." + h[:62],
		"kez.inbox." + a.Public().Hex() + "." + h[:63] + "g",
		"kez.inbox." + a.Public().Hex() + "." + h[:63] + "A",
		"kez.door." + a.Public().Hex() + "." + h,
		"",
	} {
		if got, ok := kez.InboxSenderHex(s); ok {
			t.Errorf("InboxSenderHex(%q) = %q, want refused", s, got)
		}
	}
}
