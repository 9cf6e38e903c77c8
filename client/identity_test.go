package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/message"
)

// TestCloseClearsIdentity: the client keeps one message identity for its
// sends and receives, Close clears it (sealing with it fails), and the
// client works again afterwards with a new one.
func TestCloseClearsIdentity(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if _, err := alice.SendText(ctx, handle(t, "bob"), "one"); err != nil {
		t.Fatal(err)
	}
	id := alice.MessageIdentity()
	if id == nil {
		t.Fatal("no message identity after a send")
	}
	if _, err := alice.SendText(ctx, handle(t, "bob"), "two"); err != nil {
		t.Fatal(err)
	}
	if alice.MessageIdentity() != id {
		t.Error("a second send made another identity")
	}
	alice.Close()
	if alice.MessageIdentity() != nil {
		t.Error("Close kept the identity")
	}
	b, err := bob.Account()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := message.Seal(id, b.Primary, message.Text("x"), time.Now(), nil); !errors.Is(err, message.ErrClosed) {
		t.Errorf("Seal with the identity after Close = %v, want ErrClosed", err)
	}
	if _, err := alice.SendText(ctx, handle(t, "bob"), "three"); err != nil {
		t.Fatalf("send after Close: %v", err)
	}
	got, dropped := listenOnce(t, bob)
	if len(got) != 3 || len(dropped) != 0 {
		t.Fatalf("bob got %d, dropped %v", len(got), dropped)
	}
}
