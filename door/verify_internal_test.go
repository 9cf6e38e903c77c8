package door

import (
	"context"
	"errors"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// TestCheckEnvelopeBound: a check waits for a free verifier (and gives
// up with its request's context, not as a refusal); a good envelope
// passes, and garbage, another sender's envelope and a bad signature are
// refused with their codes; every check gives its token back.
func TestCheckEnvelopeBound(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	other, _ := kez.GenerateKey(nil)
	id := message.NewIdentity(k)
	defer id.Close()
	env, wire, err := message.Seal(id, other.Public(), message.Text("hi"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	subject := kez.DoorSubject(k.Public(), kez.DoorSend)
	s := &Service{verify: make(chan struct{}, 1)}
	ctx := context.Background()
	if got, err := s.checkEnvelope(ctx, subject, wire); err != nil || got.ID != env.ID {
		t.Fatalf("a good envelope: %v", err)
	}
	bad := env
	bad.Sig[0] ^= 1
	badWire, err := bad.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, subject string
		wire          []byte
		code          string
	}{
		{"garbage", subject, []byte("{}"), kez.DoorMalformed},
		{"garbage on a bad subject", "kez.door.x.send", []byte("{}"), kez.DoorMalformed},
		{"another sender", kez.DoorSubject(other.Public(), kez.DoorSend), wire, kez.DoorSenderMismatch},
		{"bad signature", subject, badWire, kez.DoorBadSignature},
	} {
		var rf *refusal
		if _, err := s.checkEnvelope(ctx, c.subject, c.wire); !errors.As(err, &rf) || rf.code != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	if len(s.verify) != 0 {
		t.Fatal("a check kept its token")
	}

	s.verify <- struct{}{} // the one verifier is busy
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.checkEnvelope(tctx, subject, wire)
	var rf *refusal
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rf) {
		t.Fatalf("with no verifier free: %v, want the context's error", err)
	}
	<-s.verify
}
