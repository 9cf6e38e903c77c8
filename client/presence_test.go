package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natskeys"
)

// presenceOf polls bob's view of h until it is state (10 s at most).
func waitPresence(t *testing.T, c *client.Client, who, state string) client.Presence {
	t.Helper()
	var p client.Presence
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if p, err = c.Presence(context.Background(), handle(t, who)); err == nil && p.State == state {
			return p
		}
	}
	t.Fatalf("presence of %s = %+v, %v; want %s", who, p, err, state)
	return p
}

func TestPresenceOnlineThenLastSeen(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if _, _, err := bob.Add(context.Background(), handle(t, "alice")); err != nil {
		t.Fatal(err)
	}
	waitPresence(t, bob, "alice", client.PresenceUnknown)

	// bob follows his contacts while alice comes and goes.
	mu, seen := watchPresence(t, bob)

	waitWatch(t, mu, seen, []string{"alice unknown"})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := time.Now().Add(-time.Second).Unix()
	go func() { done <- alice.Announce(ctx, client.AnnounceOptions{TTL: 3 * time.Second}) }()
	on := waitPresence(t, bob, "alice", client.PresenceOnline)
	if on.LastSeen < before || on.Until <= on.LastSeen {
		t.Errorf("online presence %+v", on)
	}
	// Renewals keep her online past one TTL.
	time.Sleep(4 * time.Second)
	if p, err := bob.Presence(context.Background(), handle(t, "alice")); err != nil || p.State != client.PresenceOnline {
		t.Fatalf("after renewals: %+v, %v", p, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("announce: %v", err)
	}
	off := waitPresence(t, bob, "alice", client.PresenceOffline)
	if d := time.Now().Unix() - off.LastSeen; d < 0 || d > 3 {
		t.Errorf("last seen %d s ago after a goodbye just now", d)
	}
	// The contacts view says the same.
	ps, err := bob.ContactsPresence(context.Background())
	if err != nil || len(ps) != 1 || ps[0].State != client.PresenceOffline || ps[0].LastSeen != off.LastSeen {
		t.Fatalf("contacts presence = %+v, %v", ps, err)
	}
	waitWatch(t, mu, seen, []string{"alice unknown", "alice online", "alice offline"})
}

// watchPresence runs c.WatchPresence until the test ends, collecting
// "<local> <state>" of every change it reports.
func watchPresence(t *testing.T, c *client.Client) (*sync.Mutex, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.WatchPresence(ctx, func(p client.Presence) {
			mu.Lock()
			seen = append(seen, p.Handle.Local()+" "+p.State)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	return &mu, &seen
}

func waitWatch(t *testing.T, mu *sync.Mutex, seen *[]string, want []string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got := strings.Join(*seen, ", ")
		mu.Unlock()
		if got == strings.Join(want, ", ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher saw %q, want %q", got, strings.Join(want, ", "))
		}
	}
}

// TestPresenceKilledClientLapses: a client that dies without a goodbye
// (its connection gone, no renewals) turns into "last seen" by itself.
func TestPresenceKilledClientLapses(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if _, _, err := bob.Add(context.Background(), handle(t, "alice")); err != nil {
		t.Fatal(err)
	}
	mu, seen := watchPresence(t, bob)

	waitWatch(t, mu, seen, []string{"alice unknown"})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- alice.Announce(ctx, client.AnnounceOptions{TTL: 2 * time.Second}) }()
	on := waitPresence(t, bob, "alice", client.PresenceOnline)
	// kill -9: the connection drops, nothing more is sent.
	killed := time.Now()
	alice.Close()
	off := waitPresence(t, bob, "alice", client.PresenceOffline)
	waited := time.Since(killed)
	if waited > 4*time.Second {
		t.Errorf("offline only after %v with a 2 s TTL", waited)
	}
	// Last seen is the last renewal, or when the home server wrote
	// "offline" on the broker's disconnect event: after the kill, and
	// so possibly in the second after it.
	if seen := killed.Add(waited).Unix(); off.LastSeen < on.LastSeen || off.LastSeen > seen {
		t.Errorf("last seen %d, want from the last renewal (%d) to when offline was seen (%d)", off.LastSeen, on.LastSeen, seen)
	}
	waitWatch(t, mu, seen, []string{"alice unknown", "alice online", "alice offline"})
	stop()
	<-done
}

// TestPresenceOfflineOnDisconnect: the home server marks a user offline
// as soon as the broker reports that the connection which announced
// "online" closed (kill -9: no goodbye), long before its TTL; another
// connection of the same user closing changes nothing.
func TestPresenceOfflineOnDisconnect(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if _, _, err := bob.Add(context.Background(), handle(t, "alice")); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- alice.Announce(ctx, client.AnnounceOptions{TTL: 10 * time.Minute}) }()
	waitPresence(t, bob, "alice", client.PresenceOnline)

	// alice's `send` in another process: its connection comes and goes.
	key, err := alice.Profile().Key()
	if err != nil {
		t.Fatal(err)
	}
	other, err := client.ConnectNATS(st.NATS.ClientURL(), key)
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	time.Sleep(time.Second)
	if p, err := bob.Presence(context.Background(), handle(t, "alice")); err != nil || p.State != client.PresenceOnline {
		t.Fatalf("after another connection of alice closed: %+v, %v; want online", p, err)
	}

	killed := time.Now()
	alice.Close() // kill -9: the connection drops, no goodbye
	waitPresence(t, bob, "alice", client.PresenceOffline)
	if waited := time.Since(killed); waited > 5*time.Second {
		t.Errorf("offline %v after the connection closed, with a 10 min TTL", waited)
	}
	stop()
	<-done
}

// TestPresenceInvisible: an invisible user publishes nothing, and going
// invisible removes an earlier entry without leaving a delete behind.
func TestPresenceInvisible(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	a, _ := alice.Account()
	admin, _ := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	ctx := context.Background()
	stream, err := admin.Stream(ctx, kez.PresenceStream)
	if err != nil {
		t.Fatal(err)
	}
	live, err := st.NATS.Connect(natskeys.KeyAdmin).SubscribeSync(kez.PresenceLiveSubject(a.Primary))
	if err != nil {
		t.Fatal(err)
	}

	if err := alice.Announce(ctx, client.AnnounceOptions{Invisible: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, kez.PresenceKeySubject(a.Primary)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("an invisible user's entry: %v", err)
	}
	if m, err := live.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("an invisible user published %q", m.Data)
	}
	waitPresence(t, bob, "alice", client.PresenceUnknown)

	// Visible once (a crash leaves "online"), then invisible: the entry
	// goes, and its delete expires too.
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- alice.Announce(actx, client.AnnounceOptions{TTL: 30 * time.Second}) }()
	waitPresence(t, bob, "alice", client.PresenceOnline)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("announce: %v", err)
	}
	waitPresence(t, bob, "alice", client.PresenceOffline)
	if err := alice.Announce(ctx, client.AnnounceOptions{Invisible: true}); err != nil {
		t.Fatal(err)
	}
	waitPresence(t, bob, "alice", client.PresenceUnknown)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := stream.GetLastMsgForSubject(ctx, kez.PresenceKeySubject(a.Primary))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's entry after going invisible: %v", err)
		}
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("presence stream holds %d messages, %v; want none", info.State.Msgs, err)
	}
}

// TestPresenceOthersRefused: writing someone else's entry is a
// permissions violation, and nothing is stored.
func TestPresenceOthersRefused(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	akey, _ := alice.Key()
	b, _ := bob.Account()
	violations := make(chan error, 8)
	nc, err := client.ConnectNATS(st.NATS.ClientURL(), akey, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, write := range []func(context.Context) error{
		func(ctx context.Context) error {
			return client.PublishPresence(ctx, nc, b.Primary, client.PresenceOnline, time.Minute, time.Now())
		},
		func(ctx context.Context) error { return client.DeletePresence(ctx, nc, b.Primary) },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := write(ctx)
		cancel()
		if !errors.Is(err, client.ErrPresenceDenied) {
			t.Fatalf("alice writes bob's presence: %v", err)
		}
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), kez.PresenceKeySubject(b.Primary)) {
				t.Fatalf("async error %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no permissions violation")
		}
	}
	if p, err := bob.Presence(context.Background(), handle(t, "bob")); err != nil || p.State != client.PresenceUnknown {
		t.Fatalf("bob's presence after alice's attempts: %+v, %v", p, err)
	}
}

// TestPresenceReflectionIgnored: any user may point the answer of a
// direct get of their own presence entry, or of a door request, at
// another user's live presence subject, where that user's contacts
// listen. The broker delivers it there (checked below with a plain
// subscription), but a watcher takes only the presence stream's own
// entries for that key: mallory's online entry does not make alice look
// online to bob, nor a door answer make her look invisible.
func TestPresenceReflectionIgnored(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	mallory, _ := newUser(t, st, "mallory")
	if _, _, err := bob.Add(ctx, handle(t, "alice")); err != nil {
		t.Fatal(err)
	}
	conn := func(c *client.Client) *nats.Conn {
		k, err := c.Key()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := client.ConnectNATS(st.NATS.ClientURL(), k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	akey, _ := alice.Key()
	mkey, _ := mallory.Key()
	anc, mnc, bnc := conn(alice), conn(mallory), conn(bob)
	if err := client.PublishPresence(ctx, anc, akey.Public(), client.PresenceOffline, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Mallory's own entry carries the headers the broker sets on
	// alice's, which it keeps, and then appends its own.
	forged := nats.NewMsg(kez.PresenceKeySubject(mkey.Public()))
	forged.Header.Set(jetstream.StreamHeader, kez.PresenceStream)
	forged.Header.Set(jetstream.SubjectHeader, kez.PresenceKeySubject(akey.Public()))
	forged.Header.Set("Nats-Time-Stamp", time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	forged.Data, _ = json.Marshal(kez.PresenceEntry{Status: client.PresenceOnline, TTL: 600})
	js, err := jetstream.New(mnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatalf("mallory stores her own entry: %v", err)
	}

	mu, seen := watchPresence(t, bob)
	waitWatch(t, mu, seen, []string{"alice offline"})

	raw := make(chan *nats.Msg, 8)
	sub, err := bnc.ChanSubscribe(kez.PresenceLiveSubject(akey.Public()), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := bnc.Flush(); err != nil {
		t.Fatal(err)
	}
	target := kez.PresenceLiveSubject(akey.Public())
	for _, subject := range []string{kez.PresenceGetSubject(mkey.Public()), kez.DoorSubject(mkey.Public(), kez.DoorStat)} {
		if err := mnc.PublishRequest(subject, target, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := mnc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case m := <-raw:
			if client.StoredPresence(akey.Public(), m) {
				t.Errorf("a reflected answer passes for alice's stored entry: headers %v", m.Header)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the broker did not deliver a reflected answer to alice's live presence subject; the test no longer tries the attack")
		}
	}
	time.Sleep(500 * time.Millisecond) // the watcher has had them too
	waitWatch(t, mu, seen, []string{"alice offline"})
}

// TestLiveForgedHeadersIgnored: mallory stores her own presence entry
// with the headers of a republished inbox message (Nats-Stream INBOX,
// Nats-Subject kez.inbox.<alice>.<bob>, a far Nats-Sequence) and points a
// direct get of it at alice's live subject for bob. Taken as bob's
// message, its sequence would have alice's follower ack (purge) every
// unread message of bob's and skip every later one. The broker appends
// its own headers after hers, so each appears twice: not a message. A
// real republished message still is one.
func TestLiveForgedHeadersIgnored(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	mallory, _ := newUser(t, st, "mallory")
	akey, _ := alice.Key()
	bkey, _ := bob.Key()
	mkey, _ := mallory.Key()
	conn := func(k *kez.PrivateKey) *nats.Conn {
		nc, err := client.ConnectNATS(st.NATS.ClientURL(), k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	anc, mnc := conn(akey), conn(mkey)
	live := kez.LiveSubjects + "." + akey.Public().Hex() + "." + bkey.Public().Hex()
	raw := make(chan *nats.Msg, 8)
	sub, err := anc.ChanSubscribe(live, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	next := func(what string) *nats.Msg {
		t.Helper()
		select {
		case m := <-raw:
			return m
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing on alice's live subject: %s", what)
			return nil
		}
	}
	in := client.Inbox{NC: anc, Me: akey.Public()}

	forged := nats.NewMsg(kez.PresenceKeySubject(mkey.Public()))
	forged.Header.Set(jetstream.StreamHeader, kez.InboxStream)
	forged.Header.Set(jetstream.SubjectHeader, kez.InboxMsgSubject(akey.Public(), bkey.Public()))
	forged.Header.Set(jetstream.SequenceHeader, "4611686018427387904")
	forged.Header.Set("Nats-Last-Sequence", "0")
	forged.Data = []byte("x")
	js, err := jetstream.New(mnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatalf("mallory stores her own entry: %v", err)
	}
	if err := mnc.PublishRequest(kez.PresenceGetSubject(mkey.Public()), live, nil); err != nil {
		t.Fatal(err)
	}
	if err := mnc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, seq, ok := in.LiveMsg(next("the reflected direct get")); ok {
		t.Fatalf("the reflected answer passes for bob's message %d (previous %d)", m.Seq, seq)
	}

	if _, err := bob.SendText(ctx, handle(t, "alice"), "hello"); err != nil {
		t.Fatal(err)
	}
	if m, _, ok := in.LiveMsg(next("bob's message")); !ok || !m.Sender.Equal(bkey.Public()) {
		t.Fatalf("bob's republished message: %+v, %v", m, ok)
	}
}
