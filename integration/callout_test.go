//go:build integration

package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// The auth callout through the whole stack: what needs the door, the
// registry's HTTP API or messages flowing (callout's own tests run it
// against the broker with the registry faked).

// calloutHome starts the reference nats-server and n home-server
// replicas, each an auth-callout responder; adjust, if set, changes
// their configuration.
func calloutHome(t *testing.T, n int, adjust func(*chatserver.Config)) (*natstest.Server, []*chatserver.Server) {
	t.Helper()
	ns := natstest.Start(t)
	h := startHome(t, ns, ns.ClientURL(), 1)
	h.adjust = adjust
	var chats []*chatserver.Server
	for range n {
		chats = append(chats, h.startChat())
	}
	return ns, chats
}

// signUp registers a new key under name through the first replica's
// HTTP API and waits until every replica's cache knows it.
func signUp(t *testing.T, name string, chats []*chatserver.Server) *kez.PrivateKey {
	t.Helper()
	k := registerKey(t, chats[0].URL(), name)
	for _, c := range chats {
		waitFor(t, 10*time.Second, name+" in a replica's cache", func() bool {
			_, ok := c.Registry.Cache().LookupKey(k.Public())
			return ok
		})
	}
	return k
}

// connect signs in to ns as key, collecting the connection's
// asynchronous errors (permission violations).
func connect(t *testing.T, ns *natstest.Server, key *kez.PrivateKey, opts ...nats.Option) (*nats.Conn, *natstest.Errors) {
	t.Helper()
	e := &natstest.Errors{}
	nc, err := client.ConnectNATS(ns.ClientURL(), key, append([]nats.Option{nats.ErrorHandler(e.Handler)}, opts...)...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, e
}

// send seals text from from to to and hands it to the door on nc (signed
// in as from); it returns the envelope sent.
func send(nc *nats.Conn, from *kez.PrivateKey, to kez.PublicKey, text string) ([]byte, error) {
	_, wire, err := message.Seal(message.NewIdentity(from), to, message.Text(text), time.Now(), nil)
	if err != nil {
		return nil, err
	}
	_, err = (client.Inbox{NC: nc, Me: from.Public()}).Send(context.Background(), wire)
	return wire, err
}

func TestRegisteredUserSendsAndReceives(t *testing.T) {
	ns, chats := calloutHome(t, 2, nil)
	alice, bob := signUp(t, "alice", chats), signUp(t, "bob", chats)
	ctx := context.Background()

	bnc, _ := connect(t, ns, bob)
	wire, err := send(bnc, bob, alice.Public(), "hello alice")
	if err != nil {
		t.Fatalf("bob sends to alice through the door: %v", err)
	}

	anc, _ := connect(t, ns, alice)
	in := client.Inbox{NC: anc, Me: alice.Public()}
	if n, err := in.Unread(ctx); err != nil || n != 1 {
		t.Fatalf("alice's unread = %d, %v; want 1", n, err)
	}
	var got []client.InboxMsg
	if err := in.Drain(ctx, func(m client.InboxMsg) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Data) != string(wire) || !got[0].Sender.Equal(bob.Public()) {
		t.Fatalf("alice read %+v", got)
	}
	if n, err := in.Unread(ctx); err != nil || n != 0 {
		t.Fatalf("after the ack alice's unread = %d, %v; want 0", n, err)
	}
}

// TestDoorIsolation: the door's rows of the isolation matrix (callout's
// TestIsolation has the rest), with the door answering: a signed-in user
// is refused, with a permissions violation, every door request that
// does not name her own key, and none is answered; her own door
// requests are, and nothing she attempted reached bob's inbox or created
// a consumer.
func TestDoorIsolation(t *testing.T) {
	ns, chats := calloutHome(t, 1, nil)
	alice, bob := signUp(t, "alice", chats), signUp(t, "bob", chats)
	nc, e := connect(t, ns, alice)
	B := bob.Public().Hex()
	pubs := []string{
		// The door answers only for the caller's own key.
		"kez.door." + B + ".send",
		"kez.door." + B + ".read",
		"kez.door." + B + ".ack",
		"kez.door." + B + ".stat",
		"kez.door.*.read",
	}
	// Requests carry replies to alice's own prefix; none may come back.
	replies, err := nc.SubscribeSync(kez.UserInboxPrefix(alice.Public()) + ".isolation.>")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pubs {
		t.Run("pub "+p, func(t *testing.T) {
			body := []byte(`{"stream_name":"X","config":{"name":"X","mirror":{"name":"KEZ_INBOX"}}}`)
			reply := fmt.Sprintf("%s.isolation.%d", kez.UserInboxPrefix(alice.Public()), i)
			if err := nc.PublishRequest(p, reply, body); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "a violation on "+p, func() bool { return e.Violation(p) })
		})
	}
	if m, err := replies.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a refused request was answered: %s %s", m.Subject, m.Data)
	}
	// Control: alice's own door requests are answered.
	ctx := context.Background()
	if _, err := send(nc, alice, bob.Public(), "hi"); err != nil {
		t.Fatalf("allowed send: %v", err)
	}
	in := client.Inbox{NC: nc, Me: alice.Public()}
	if _, err := in.Unread(ctx); err != nil {
		t.Fatalf("allowed stat: %v", err)
	}
	if err := in.Drain(ctx, func(client.InboxMsg) error { return nil }); err != nil {
		t.Fatalf("allowed read: %v", err)
	}
	// Nothing alice attempted reached bob's inbox or created anything:
	// the inbox stream has no consumer at all.
	admin, _ := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	s, err := admin.Stream(ctx, kez.InboxStream)
	if err != nil {
		t.Fatal(err)
	}
	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		t.Errorf("inbox consumer %q exists", n)
	}
	bnc, _ := connect(t, ns, bob)
	if n, err := (client.Inbox{NC: bnc, Me: bob.Public()}).Unread(ctx); err != nil || n != 1 {
		t.Errorf("bob's unread: %d, %v; want alice's one message", n, err)
	}
}

func TestUserJWTExpiryReauthorises(t *testing.T) {
	ns, chats := calloutHome(t, 1, func(c *chatserver.Config) { c.UserJWTTTL = 2 * time.Second })
	alice, bob := signUp(t, "alice", chats), signUp(t, "bob", chats)
	ctx := context.Background()
	reconnected := make(chan struct{}, 16)
	anc, _ := connect(t, ns, alice, nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	bnc, _ := connect(t, ns, bob)

	// Bob keeps writing while alice's JWT expires twice.
	const n = 30
	for i := range n {
		if _, err := send(bnc, bob, alice.Public(), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	for range 2 {
		select {
		case <-reconnected:
		case <-time.After(10 * time.Second):
			t.Fatal("alice did not reconnect after her JWT expired")
		}
	}
	waitFor(t, 10*time.Second, "alice connected", anc.IsConnected)
	ain := client.Inbox{NC: anc, Me: alice.Public()}
	seen := map[string]bool{}
	if err := ain.Drain(ctx, func(m client.InboxMsg) error {
		seen[string(m.Data)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d of %d messages after re-authorisation", len(seen), n)
	}
}

// TestHostileReplies: NATS checks the subject of a publish, never its
// reply subject, and JetStream answers allowed requests (a pull, an ack,
// a consumer info, a stored message) on whatever reply it was given. A
// user must not be able to point those answers at the JetStream API.
func TestHostileReplies(t *testing.T) {
	ns, chats := calloutHome(t, 1, nil)
	alice, bob := signUp(t, "alice", chats), signUp(t, "bob", chats)
	ctx := context.Background()
	bnc, _ := connect(t, ns, bob)
	if _, err := send(bnc, bob, alice.Public(), "for alice"); err != nil {
		t.Fatal(err)
	}
	nc, _ := connect(t, ns, alice)
	A, B := alice.Public().Hex(), bob.Public().Hex()
	inbox := kez.InboxStream
	api := kez.UserAPIPrefix
	// alice's presence entry exists, so her direct gets answer with data.
	if err := client.PublishPresence(ctx, nc, alice.Public(), client.PresenceOnline, time.Minute, time.Now()); err != nil {
		t.Fatalf("alice announces herself: %v", err)
	}
	door := func(op string) string { return kez.DoorSubject(alice.Public(), op) }
	attacks := []struct{ subject, reply string }{
		// The door's answers, pointed at the JetStream API, at the KV
		// buckets, or at bob's live subjects.
		{door("read"), "$JS.API.STREAM.DELETE." + inbox},
		{door("read"), "$JS.API.STREAM.PURGE." + inbox},
		{door("stat"), "$JS.API.STREAM.DELETE." + streams.RegistryStream},
		{door("ack"), "$JS.API.STREAM.PURGE." + inbox},
		{door("send"), "$KV.kez_handles.alice"},
		{door("read"), "kez.live." + B + "." + A},
		{door("stat"), "kez.inbox." + B + "." + A},
		{api + ".CONSUMER.MSG.NEXT." + inbox + "." + A, "$JS.API.STREAM.DELETE." + inbox},
		{api + ".CONSUMER.MSG.NEXT." + inbox + "." + A, "$JS.API.STREAM.DELETE." + streams.RegistryStream},
		{api + ".CONSUMER.MSG.NEXT." + inbox + "." + A, api + ".STREAM.DELETE." + inbox},
		{api + ".CONSUMER.INFO." + inbox + "." + A, "$JS.API.CONSUMER.DELETE." + inbox + "." + B},
		{api + ".CONSUMER.INFO." + inbox + "." + A, "$JS.API.STREAM.PURGE." + inbox},
		{"$JS.API.CONSUMER.MSG.NEXT." + inbox + "." + A, "$JS.API.STREAM.DELETE." + inbox},
		{"$JS.API.CONSUMER.MSG.NEXT." + inbox + "." + A, "$JS.API.STREAM.DELETE." + streams.RegistryStream},
		{"$JS.ACK." + inbox + "." + A + ".1.1.1.1.0", "$JS.API.STREAM.DELETE." + streams.RegistryStream},
		{"$JS.API.CONSUMER.INFO." + inbox + "." + A, "$JS.API.CONSUMER.DELETE." + inbox + "." + B},
		{"$JS.API.CONSUMER.INFO." + inbox + "." + A, "$JS.API.STREAM.PURGE." + inbox},
		{kez.InboxSubject(bob.Public()), "$JS.API.STREAM.DELETE." + inbox},
		{kez.InboxSubject(bob.Public()), "$KV.kez_handles.alice"},
		// Presence: the write's ack and the direct get's answer go back
		// through the import; pointed at another stream's API or at bob's
		// entry they must not reach KEZ.
		{kez.PresenceKeySubject(alice.Public()), "$JS.API.STREAM.DELETE." + inbox},
		{kez.PresenceKeySubject(alice.Public()), "$JS.API.STREAM.PURGE." + kez.PresenceStream},
		{kez.PresenceKeySubject(alice.Public()), kez.PresenceKeySubject(bob.Public())},
		{kez.PresenceGetSubject(alice.Public()), "$JS.API.STREAM.DELETE." + kez.PresenceStream},
		{kez.PresenceGetSubject(alice.Public()), kez.PresenceKeySubject(bob.Public())},
		{kez.PresenceGetSubject(alice.Public()), "$KV.kez_handles.alice"},
		{kez.InboxSubject(bob.Public()), kez.PresenceKeySubject(bob.Public())},
		{kez.PresenceGetSubject(bob.Public()), kez.PresenceKeySubject(bob.Public())},
	}
	for _, a := range attacks {
		body := []byte(`{"batch":1,"no_wait":true}`)
		if err := nc.PublishRequest(a.subject, a.reply, body); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	time.Sleep(500 * time.Millisecond)

	admin, _ := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	// A roll-up on her own key would purge every entry if the bucket
	// allowed roll-ups (subject delete markers require them).
	rollup := nats.NewMsg(kez.PresenceKeySubject(alice.Public()))
	rollup.Header.Set("Nats-Rollup", "all")
	rollup.Data = []byte(`{"status":"online","ts":1,"ttl":60}`)
	if js, _ := client.JetStream(nc); js != nil {
		if _, err := js.PublishMsg(ctx, rollup); err == nil {
			t.Error("a roll-up on the presence bucket was accepted")
		}
	}
	for _, name := range []string{inbox, streams.RegistryStream, "KV_kez_handles", kez.PresenceStream} {
		if _, err := admin.Stream(ctx, name); err != nil {
			t.Errorf("stream %s after the attacks: %v", name, err)
		}
	}
	if n, err := (client.Inbox{NC: nc, Me: alice.Public()}).Unread(ctx); err != nil || n != 1 {
		t.Errorf("alice's unread after the attacks: %d, %v; want 1", n, err)
	}
	kv, err := admin.KeyValue(ctx, "kez_handles")
	if err == nil {
		if e, err := kv.Get(ctx, "alice"); err != nil || !strings.Contains(string(e.Value()), A) {
			t.Errorf("alice's record after the attacks: %v", err)
		}
	}
	ps, err := admin.Stream(ctx, kez.PresenceStream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := ps.GetLastMsgForSubject(ctx, kez.PresenceKeySubject(bob.Public())); err == nil {
		t.Errorf("bob's presence entry was written: %s %q", m.Header, m.Data)
	}
	if _, err := ps.GetLastMsgForSubject(ctx, kez.PresenceKeySubject(alice.Public())); err != nil {
		t.Errorf("alice's presence entry after the attacks: %v", err)
	}
}

// TestSignInRightAfterRegistration: a user signs in the moment the 201
// arrives, whichever replica answers the callout.
func TestSignInRightAfterRegistration(t *testing.T) {
	ns, chats := calloutHome(t, 2, nil)
	for i := range 10 {
		k, _ := kez.GenerateKey(nil)
		if resp, body := postKeyRegistration(t, chats[i%2].URL(), k, fmt.Sprintf("quick%d", i)); resp.StatusCode != http.StatusCreated {
			t.Fatalf("register: %d %s", resp.StatusCode, body)
		}
		nc, err := client.ConnectNATS(ns.ClientURL(), k, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("sign-in %d right after registration: %v", i, err)
		}
		nc.Close()
	}
}
