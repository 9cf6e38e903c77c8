package client_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestSendNotRecorded: a message the door stored whose history append
// fails (a full disk) is reported as delivered and not recorded
// (ErrSentNotRecorded, with its entry), never as a failed send, which
// the user would send again and the recipient get twice.
func TestSendNotRecorded(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "nr_alice")
	bob, _ := newUser(t, st, "nr_bob")
	if _, _, err := alice.Add(ctx, handle(t, "nr_bob")); err != nil {
		t.Fatal(err)
	}
	fail := errors.New("injected: no space left on device")
	client.SetSyncHistory(t, func(*os.File) error { return fail })
	e, err := alice.SendText(ctx, handle(t, "nr_bob"), "pay 100")
	client.SetSyncHistory(t, (*os.File).Sync)
	if !errors.Is(err, client.ErrSentNotRecorded) || !errors.Is(err, fail) {
		t.Fatalf("send with the history failing: %v; want ErrSentNotRecorded wrapping the cause", err)
	}
	if e.ID == "" || e.Body != "pay 100" {
		t.Errorf("send with the history failing returned entry %+v; want the message sent", e)
	}
	if len(client.Hints(err)) == 0 {
		t.Error("no hint says not to send it again")
	}
	got, _ := listenOnce(t, bob)
	if len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("@nr_bob got %d messages; want the one sent (%s)", len(got), e.ID)
	}
	if h, err := alice.History(kez.Handle{}); err != nil || len(h) != 0 {
		t.Errorf("alice's history: %d entries, %v; want none (the append failed)", len(h), err)
	}
}
