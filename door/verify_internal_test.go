package door

import (
	"context"
	"errors"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// TestVerifyEnvelopeBound: a check waits for a free verifier (and gives
// up with its request's context, not as a bad signature), a good
// signature passes and a bad one is DoorBadSignature.
func TestVerifyEnvelopeBound(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	to, _ := kez.GenerateKey(nil)
	id := message.NewIdentity(k)
	defer id.Close()
	env, _, err := message.Seal(id, to.Public(), message.Text("hi"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{verify: make(chan struct{}, 1)}
	if err := s.verifyEnvelope(context.Background(), env); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	bad := env
	bad.Sig[0] ^= 1
	var rf *refusal
	if err := s.verifyEnvelope(context.Background(), bad); !errors.As(err, &rf) || rf.code != kez.DoorBadSignature {
		t.Fatalf("a bad signature: %v", err)
	}

	s.verify <- struct{}{} // the one verifier is busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = s.verifyEnvelope(ctx, env)
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rf) {
		t.Fatalf("with no verifier free: %v, want the context's error", err)
	}
	<-s.verify
	if len(s.verify) != 0 {
		t.Fatal("a check kept its token")
	}
}
