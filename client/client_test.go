package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/mnemonic"
	"kez.lat/kez/sigchain"
)

// newUser registers handle in a fresh profile.
func newUser(t *testing.T, st *clienttest.Stack, handle string) (*client.Client, []string) {
	t.Helper()
	c := newClient(t, st)
	return c, register(t, c, handle)
}

// register registers handle for a new key in c's profile, and returns
// the key's words.
func register(t *testing.T, c *client.Client, handle string) []string {
	t.Helper()
	key, words, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.ParseHandle(handle)
	if err != nil {
		t.Fatal(err)
	}
	if _, chainErr, err := c.Register(context.Background(), h, key); err != nil || chainErr != nil {
		t.Fatalf("register %s: %v, %v", handle, err, chainErr)
	}
	return words
}

func newClient(t *testing.T, st *clienttest.Stack) *client.Client {
	t.Helper()
	return newClientVia(t, st.URL())
}

// newClientVia is a client of a fresh profile that asks the home server
// at server (a proxy of the stack's, say).
func newClientVia(t *testing.T, server string) *client.Client {
	t.Helper()
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), "profile"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(p, client.Config{Server: server, Domain: clienttest.Domain})
	t.Cleanup(c.Close)
	return c
}

func handle(t *testing.T, s string) kez.Handle {
	t.Helper()
	h, err := kez.ParseHandle(s, clienttest.Domain)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func listenOnce(t *testing.T, c *client.Client) (got []client.Entry, dropped []client.Dropped) {
	t.Helper()
	got, dropped, _ = listenEvents(t, c)
	return got, dropped
}

func TestRegisterSendListen(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, words := newUser(t, st, "bob")

	a, err := alice.Account()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Chain.NATS) != 1 || len(a.Chain.P2P) != 1 || a.Chain.Tail.Seqno != 2 {
		t.Fatalf("own chain after register: %+v", a.Chain)
	}
	if !strings.HasPrefix(a.Chain.P2P[0].PeerID, "12D3KooW") {
		t.Errorf("peer id %q", a.Chain.P2P[0].PeerID)
	}
	if _, added, err := alice.Add(ctx, handle(t, "bob")); err != nil || !added {
		t.Fatalf("add bob: %v %v", added, err)
	}
	for i := range 3 {
		if _, err := alice.SendText(ctx, handle(t, "bob"), fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got, dropped := listenOnce(t, bob)
	if len(got) != 3 || len(dropped) != 0 {
		t.Fatalf("bob got %d, dropped %v", len(got), dropped)
	}
	for i, e := range got {
		if e.Body != fmt.Sprintf("hello %d", i) || e.Peer != handle(t, "alice") {
			t.Errorf("message %d = %+v", i, e)
		}
	}
	if got[0].Warning != client.WarnNewContact || got[1].Warning != "" {
		t.Errorf("warnings %q %q", got[0].Warning, got[1].Warning)
	}
	// Alice is now bob's contact (pinned on receipt); bob answers.
	if _, err := bob.SendText(ctx, handle(t, "alice"), "hi alice"); err != nil {
		t.Fatal(err)
	}
	got, _ = listenOnce(t, alice)
	if len(got) != 1 || got[0].Body != "hi alice" || got[0].Warning != "" {
		t.Fatalf("alice got %+v", got)
	}
	hist, err := bob.History(handle(t, "alice"))
	if err != nil || len(hist) != 4 {
		t.Fatalf("bob's history: %d entries, %v", len(hist), err)
	}

	// Recover bob into a new profile: same handle, same chain.
	bob2 := newClient(t, st)
	b2, chainErr, err := bob2.Recover(ctx, strings.Join(words, " "))
	if err != nil || chainErr != nil {
		t.Fatalf("recover: %v %v", err, chainErr)
	}
	if b2.Handle != handle(t, "bob") || b2.Chain.Tail.Seqno != 2 {
		t.Fatalf("recovered %+v", b2)
	}
	if _, err := alice.SendText(ctx, handle(t, "bob"), "after recovery"); err != nil {
		t.Fatal(err)
	}
	got, _ = listenOnce(t, bob2)
	if len(got) != 1 || got[0].Body != "after recovery" {
		t.Fatalf("recovered bob got %+v", got)
	}
}

func TestRecoverErrors(t *testing.T) {
	st := clienttest.Start(t)
	c := newClient(t, st)
	_, _, err := c.Recover(context.Background(), "abandon abandon")
	if !errors.Is(err, mnemonic.ErrWordCount) {
		t.Errorf("short: %v", err)
	}
	seed := make([]byte, 32)
	seed[0] = 7
	words, _ := mnemonic.FromSeed(seed)
	_, _, err = c.Recover(context.Background(), strings.Join(words, " "))
	if err == nil || !strings.Contains(err.Error(), "no handle") {
		t.Errorf("unregistered: %v", err)
	}
	_ = time.Second
}

// backlog starts a stack where alice has sent bob n messages, "m0" on,
// and returns bob, who has not listened yet.
func backlog(t *testing.T, n int) *client.Client {
	t.Helper()
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if _, _, err := alice.Add(ctx, handle(t, "bob")); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := alice.SendText(ctx, handle(t, "bob"), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return bob
}

// TestListenBacklogOneSync: a backlog is stored a page at a time, one
// synced write of the history per page, not one per message; and a page
// whose write fails is neither shown nor acked: the next listen gets all
// of it, each message once.
func TestListenBacklogOneSync(t *testing.T) {
	const n = 12
	bob, ctx := backlog(t, n), context.Background()
	fail := errors.New("injected sync failure")
	client.SetSyncHistory(t, func(*os.File) error { return fail })
	shown := 0
	err := bob.Listen(ctx, client.ListenOptions{Once: true}, func(client.Event) { shown++ })
	if !errors.Is(err, fail) || !errors.Is(err, client.ErrStore) || shown != 0 {
		t.Fatalf("listen with the history failing: %v, %d events; want the failure (ErrStore) and nothing shown", err, shown)
	}
	if h, err := bob.History(kez.Handle{}); err != nil || len(h) != 0 {
		t.Fatalf("history after the failure: %d entries, %v", len(h), err)
	}

	syncs := 0
	client.SetSyncHistory(t, func(f *os.File) error { syncs++; return f.Sync() })
	got, dropped := listenOnce(t, bob)
	if len(got) != n || len(dropped) != 0 {
		t.Fatalf("bob got %d of %d, dropped %v", len(got), n, dropped)
	}
	for i, e := range got {
		if e.Body != fmt.Sprintf("m%d", i) {
			t.Errorf("message %d = %q", i, e.Body)
		}
	}
	if syncs != 1 {
		t.Errorf("%d syncs of the history for a backlog of %d, want 1", syncs, n)
	}
	if got, _ := listenOnce(t, bob); len(got) != 0 {
		t.Errorf("%d messages again after they were stored", len(got))
	}
}

// TestListenFailedCommitPinsNothing: a new contact is pinned with its
// messages, not before: when their commit fails, the contact is not
// pinned, and the next listen shows the first message with new_contact.
// With Max, a commit that fails once is not retried: nothing is shown.
func TestListenFailedCommitPinsNothing(t *testing.T) {
	bob, ctx := backlog(t, 3), context.Background()
	fail := errors.New("injected sync failure")
	failures := 0
	client.SetSyncHistory(t, func(f *os.File) error {
		if failures < 2 {
			failures++
			return fail
		}
		return f.Sync()
	})
	for _, opts := range []client.ListenOptions{{Once: true}, {Once: true, Max: 2}} {
		shown := 0
		err := bob.Listen(ctx, opts, func(client.Event) { shown++ })
		if !errors.Is(err, fail) || shown != 0 {
			t.Fatalf("listen %+v with the history failing: %v, %d events; want the failure and nothing shown", opts, err, shown)
		}
		if cs, err := bob.Profile().Contacts(); err != nil || len(cs) != 0 {
			t.Fatalf("contacts after a failed commit: %v, %v", cs, err)
		}
	}
	got, _ := listenOnce(t, bob)
	if len(got) != 3 || got[0].Warning != client.WarnNewContact || got[1].Warning != "" {
		t.Fatalf("after the failures: %d messages, warnings %v", len(got), got)
	}
}

// TestHistoryAfterTornLine: a line torn by a crash mid-append does not
// swallow the first entry stored after it.
func TestHistoryAfterTornLine(t *testing.T) {
	bob := backlog(t, 2)
	torn := `{"dir":"in","peer":"alice@kez.test","id":"to`
	if err := os.WriteFile(filepath.Join(bob.Profile().Dir, "history.jsonl"), []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := listenOnce(t, bob); len(got) != 2 {
		t.Fatalf("listen: %d messages, want 2", len(got))
	}
	h, err := bob.History(kez.Handle{})
	if err != nil || len(h) != 2 {
		t.Fatalf("history: %d entries, %v; want both messages", len(h), err)
	}
}

// TestListenPinRace: another kez-chat pins the sender of a page with
// another key while the page is being stored. The page's messages were
// taken as a new contact's, checked against no pinned key: the commit
// fails and stores nothing, and the next listen quarantines them as from
// a changed key.
func TestListenPinRace(t *testing.T) {
	bob := backlog(t, 2)
	ctx := context.Background()
	other, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	contacts := filepath.Join(bob.Profile().Dir, "contacts.json")
	race, err := json.Marshal(map[string]any{"v": 1, "contacts": []client.Contact{
		{Handle: handle(t, "alice"), Key: other.Public(), Chain: sigchain.State{Key: other.Public()}}}})
	if err != nil {
		t.Fatal(err)
	}
	client.SetSyncHistory(t, func(f *os.File) error {
		// The other process, between the history's write and the
		// contacts' (this one holds the profile lock: write the file).
		if _, err := os.Stat(contacts); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(contacts, race, 0o600); err != nil {
				t.Error(err)
			}
		}
		return f.Sync()
	})
	shown := 0
	err = bob.Listen(ctx, client.ListenOptions{Once: true}, func(client.Event) { shown++ })
	if err == nil || !strings.Contains(err.Error(), "pinned with another key") || shown != 0 {
		t.Fatalf("listen racing another pin: %v, %d shown", err, shown)
	}
	if h, err := bob.History(kez.Handle{}); err != nil || len(h) != 0 {
		t.Fatalf("history after the race: %d entries, %v; want none", len(h), err)
	}
	got, _ := listenOnce(t, bob)
	if len(got) != 2 || got[0].Warning != client.WarnKeyChanged || got[1].Warning != client.WarnKeyChanged {
		t.Fatalf("the next listen: %+v, want both quarantined as key_changed", got)
	}
}
