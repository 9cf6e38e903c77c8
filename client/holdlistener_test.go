package client_test

import (
	"context"
	"errors"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestHoldListener: a held listen lock refuses other processes' listen
// and chat, lets the holder's own Listen run (and run again), and is
// free once released.
func TestHoldListener(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	chat, _ := newUser(t, st, "alice")
	p, err := client.OpenProfile(chat.Profile().Dir)
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain})
	t.Cleanup(other.Close)

	release, err := chat.HoldListener()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chat.HoldListener(); !errors.Is(err, client.ErrListening) {
		t.Errorf("second HoldListener on the holder = %v, want ErrListening", err)
	}
	if _, err := other.HoldListener(); !errors.Is(err, client.ErrListening) {
		t.Errorf("HoldListener of another process = %v, want ErrListening", err)
	}
	if err := other.Listen(ctx, client.ListenOptions{Once: true}, nil); !errors.Is(err, client.ErrListening) {
		t.Errorf("Listen of another process = %v, want ErrListening", err)
	}
	for i := range 2 {
		if err := chat.Listen(ctx, client.ListenOptions{Once: true}, nil); err != nil {
			t.Fatalf("holder's Listen #%d: %v", i+1, err)
		}
	}
	release()
	release() // idempotent
	if err := other.Listen(ctx, client.ListenOptions{Once: true}, nil); err != nil {
		t.Errorf("Listen after release: %v", err)
	}
	r2, err := other.HoldListener()
	if err != nil {
		t.Fatalf("HoldListener after release: %v", err)
	}
	r2()
}
