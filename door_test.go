package kez_test

import (
	"bytes"
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
		{`{"after":7,"format":"bin"}`, 7, true},
		{`{"format":"bin"}`, 0, true},
		{`{"after":7,"format":"json"}`, 0, false},
		{`{"after":7,"format":1}`, 0, false},
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

func TestReadReply(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	var sender [32]byte
	copy(sender[:], k.Public().Bytes())
	msgs := []kez.ReadMsg{{Seq: 3, Sender: sender, Data: []byte("one")}, {Seq: 9, Sender: sender, Data: []byte{}}, {Seq: 1 << 40, Sender: sender, Data: bytes.Repeat([]byte{7}, 70000)}}
	for _, more := range []bool{false, true} {
		b := kez.AppendReadReplyHead(nil)
		for _, m := range msgs {
			b = kez.AppendReadMsg(b, m)
		}
		if more {
			kez.SetReadReplyMore(b)
		}
		got, gotMore, err := kez.ParseReadReply(b)
		if err != nil || gotMore != more || len(got) != len(msgs) {
			t.Fatalf("ParseReadReply = %d msgs, %v, %v", len(got), gotMore, err)
		}
		for i := range got {
			if got[i].Seq != msgs[i].Seq || got[i].Sender != msgs[i].Sender || !bytes.Equal(got[i].Data, msgs[i].Data) {
				t.Errorf("message %d: %+v", i, got[i].Seq)
			}
		}
	}
	if got, more, err := kez.ParseReadReply(kez.AppendReadReplyHead(nil)); err != nil || more || len(got) != 0 {
		t.Errorf("empty answer: %v, %v, %v", got, more, err)
	}
	good := kez.AppendReadMsg(kez.AppendReadReplyHead(nil), msgs[0])
	for name, b := range map[string][]byte{
		"empty":      nil,
		"JSON":       []byte(`{"msgs":[]}`),
		"magic":      append([]byte("kzr2"), good[4:]...),
		"flags":      append(append([]byte("kzr1"), 2), good[5:]...),
		"cut head":   good[:len(good)-4-len("one")],
		"cut data":   good[:len(good)-1],
		"trailing":   append(bytes.Clone(good), 0),
		"seq 0":      kez.AppendReadMsg(kez.AppendReadReplyHead(nil), kez.ReadMsg{Seq: 0, Sender: sender}),
		"seq repeat": kez.AppendReadMsg(bytes.Clone(good), msgs[0]),
		"seq falls":  kez.AppendReadMsg(kez.AppendReadMsg(kez.AppendReadReplyHead(nil), msgs[1]), msgs[0]),
	} {
		if _, _, err := kez.ParseReadReply(b); !errors.Is(err, kez.ErrReadReply) {
			t.Errorf("%s: ParseReadReply = %v, want ErrReadReply", name, err)
		}
	}
}

// FuzzParseReadReply: the client's parser of the door's binary read
// answer takes any bytes without panicking, refuses with ErrReadReply,
// and accepts only answers that encode back to the same bytes.
func FuzzParseReadReply(f *testing.F) {
	var sender [32]byte
	sender[0] = 1
	b := kez.AppendReadReplyHead(nil)
	f.Add(bytes.Clone(b))
	b = kez.AppendReadMsg(b, kez.ReadMsg{Seq: 1, Sender: sender, Data: []byte("envelope")})
	b = kez.AppendReadMsg(b, kez.ReadMsg{Seq: 5, Sender: sender, Data: nil})
	f.Add(bytes.Clone(b))
	kez.SetReadReplyMore(b)
	f.Add(b)
	f.Add([]byte("kzr1\x01\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, more, err := kez.ParseReadReply(b)
		if err != nil {
			if !errors.Is(err, kez.ErrReadReply) {
				t.Fatalf("error %v without the sentinel", err)
			}
			return
		}
		again := kez.AppendReadReplyHead(nil)
		for _, m := range msgs {
			if m.Seq == 0 {
				t.Fatal("sequence 0 accepted")
			}
			again = kez.AppendReadMsg(again, m)
		}
		if more {
			kez.SetReadReplyMore(again)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%q does not encode back to itself", b)
		}
	})
}
