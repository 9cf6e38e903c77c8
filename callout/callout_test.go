package callout_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

const domain = "kez.test"

type stack struct {
	ns      *natstest.Server
	servers []*chatserver.Server
}

func config(ns *natstest.Server) chatserver.Config {
	cfg := clienttest.ChatConfig(ns)
	cfg.Domain = domain
	return cfg
}

// newStack starts the reference nats-server and n home servers, each an
// auth-callout responder.
func newStack(t *testing.T, n int, mut func(*chatserver.Config)) *stack {
	t.Helper()
	st := &stack{ns: natstest.Start(t)}
	cfg := config(st.ns)
	if mut != nil {
		mut(&cfg)
	}
	for range n {
		st.servers = append(st.servers, startServer(t, cfg))
	}
	return st
}

func startServer(t *testing.T, cfg chatserver.Config) *chatserver.Server {
	t.Helper()
	srv, err := chatserver.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeServer(srv) })
	return srv
}

func closeServer(srv *chatserver.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Close(ctx)
}

// register registers a new key under handle through the HTTP API.
func (st *stack) register(t *testing.T, handle string) *kez.PrivateKey {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := kez.ParseHandle(handle, domain)
	body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
	resp, err := http.Post(st.servers[0].URL()+"/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: %s", handle, resp.Status)
	}
	// Every responder's cache must know the key before it can sign in.
	for _, srv := range st.servers {
		waitFor(t, func() bool { _, ok := srv.Registry.Cache().LookupKey(k.Public()); return ok })
	}
	return k
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// errs collects a connection's asynchronous errors (permission violations).
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) violation(subject string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.list {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

func connect(t *testing.T, st *stack, key *kez.PrivateKey, opts ...nats.Option) (*nats.Conn, *errs) {
	t.Helper()
	e := &errs{}
	nc, err := client.ConnectNATS(st.ns.ClientURL(), key, append([]nats.Option{nats.ErrorHandler(e.handler)}, opts...)...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, e
}

func TestRegisteredUserSendsAndReceives(t *testing.T) {
	st := newStack(t, 2, nil)
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	ctx := context.Background()

	bnc, _ := connect(t, st, bob)
	_, wire, err := message.Seal(message.NewIdentity(bob), alice.Public(), message.Text("hello alice"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (client.Inbox{NC: bnc, Me: bob.Public()}).Send(ctx, wire); err != nil {
		t.Fatalf("bob sends to alice through the door: %v", err)
	}

	anc, _ := connect(t, st, alice)
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
	// The server reports the connection under the handle.
	if name := connectionName(t, st, alice); name != "alice@"+domain {
		t.Errorf("connection user = %q", name)
	}
}

func connectionName(t *testing.T, st *stack, key *kez.PrivateKey) string {
	t.Helper()
	conns, err := st.ns.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns.Conns {
		if strings.Contains(c.Name, key.Public().String()) {
			return c.AuthorizedUser
		}
	}
	return ""
}

func TestDenials(t *testing.T) {
	st := newStack(t, 1, nil)
	alice := st.register(t, "alice")
	stranger, _ := kez.GenerateKey(nil)
	url := st.ns.ClientURL()

	expectDenied := func(t *testing.T, opts ...nats.Option) {
		t.Helper()
		start := time.Now()
		nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatal("connection accepted")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("err = %v, want an authorization violation", err)
		}
		// A denial is an answer, not a time-out.
		if d := time.Since(start); d > time.Second {
			t.Errorf("denial took %v", d)
		}
	}
	signer := func(k *kez.PrivateKey) nats.SignatureHandler {
		return func(n []byte) ([]byte, error) { return k.Sign(kez.PurposeNATSAuth, n), nil }
	}

	t.Run("unregistered key", func(t *testing.T) {
		expectDenied(t, nats.Nkey(stranger.Public().NKey(), signer(stranger)))
	})
	t.Run("nonce signed by another key", func(t *testing.T) {
		expectDenied(t, nats.Nkey(alice.Public().NKey(), signer(stranger)))
	})
	t.Run("raw nonce signature", func(t *testing.T) {
		// What a client before kez-nats-auth-v1 sent: the nonce signed
		// raw, with no context. Only the context form signs in.
		raw := ed25519.NewKeyFromSeed(alice.Seed())
		expectDenied(t, nats.Nkey(alice.Public().NKey(), func(n []byte) ([]byte, error) {
			return ed25519.Sign(raw, n), nil
		}))
	})
	t.Run("nonce signed for another purpose", func(t *testing.T) {
		for _, p := range kez.Purposes() {
			if p == kez.PurposeNATSAuth {
				continue
			}
			expectDenied(t, nats.Nkey(alice.Public().NKey(), func(n []byte) ([]byte, error) {
				return alice.Sign(p, n), nil
			}))
		}
	})
	t.Run("replayed signature", func(t *testing.T) {
		// Capture a nonce and alice's real signature over it from a
		// successful connection, then present that signature again.
		var nonce, sig []byte
		nc, err := nats.Connect(url, nats.Nkey(alice.Public().NKey(), func(n []byte) ([]byte, error) {
			nonce = append([]byte(nil), n...)
			return alice.Sign(kez.PurposeNATSAuth, n), nil
		}), nats.CustomInboxPrefix(kez.UserInboxPrefix(alice.Public())))
		if err != nil {
			t.Fatalf("first connection: %v", err)
		}
		nc.Close()
		sig = alice.Sign(kez.PurposeNATSAuth, nonce)
		expectDenied(t, nats.Nkey(alice.Public().NKey(), func(n []byte) ([]byte, error) {
			if bytes.Equal(n, nonce) {
				t.Fatal("server sent the same nonce twice")
			}
			return sig, nil
		}))
	})
	t.Run("no nkey", func(t *testing.T) {
		expectDenied(t, nats.UserInfo("alice", "password"))
	})
	t.Run("token", func(t *testing.T) {
		expectDenied(t, nats.Token("anything"))
	})
	t.Run("no credentials", func(t *testing.T) {
		expectDenied(t)
	})
}

func TestMalformedRequests(t *testing.T) {
	st := newStack(t, 1, nil)
	svc := st.servers[0].Callout
	for _, tt := range []struct {
		name string
		data []byte
		xkey string
	}{
		{"garbage sealed", []byte("garbage"), "XAAAA"},
		{"unsealed while an xkey is configured", []byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA"), ""},
		{"empty", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, _, err := svc.Answer(tt.data, tt.xkey)
			if !errors.Is(err, callout.ErrMalformed) || resp != nil {
				t.Fatalf("Answer = %q, %v; want no answer, ErrMalformed", resp, err)
			}
		})
	}
	// Not even the callout account's own user can send a request: the
	// server denies publishing to the callout subject in that account.
	e := &errs{}
	nc := st.ns.Connect(natskeys.KeyCallout, nats.ErrorHandler(e.handler))
	if _, err := nc.Request(callout.Subject, []byte("not a jwt"), 300*time.Millisecond); err == nil {
		t.Fatal("a forged request was answered")
	}
	waitFor(t, func() bool { return e.violation(callout.Subject) })
	// And the service still works.
	alice := st.register(t, "alice")
	connect(t, st, alice)
}

// TestIsolation: each row is a real attempt by a signed-in user that the
// broker must refuse with a permissions violation.
func TestIsolation(t *testing.T) {
	st := newStack(t, 1, nil)
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	nc, e := connect(t, st, alice)
	A, B := alice.Public().Hex(), bob.Public().Hex()
	inbox := kez.InboxStream

	subs := []string{
		"kez.inbox." + B,       // another inbox, core
		"kez.inbox.*",          // every inbox
		"kez.inbox.>",          // every inbox, each sender
		"kez.live." + B + ".*", // another user's live delivery
		"kez.live.*.*",         // everybody's live delivery
		"kez.live.>",
		"kez.live." + B + "." + A,
		"kez.door.>",         // the door's requests
		"_I." + B + ".>",     // another user's replies
		"_INBOX.>",           // everybody's default replies
		"$JS.EVENT.>",        // advisories (consumer names, API audit)
		"$JS.API.>",          // API traffic
		"$SYS.>",             // system events
		"$KV.>",              // KV traffic
		"kez.registry.>",     // the registry
		">",                  // everything
		"$SRV.>",             // service discovery
		"$SYS.REQ.USER.AUTH", // callout requests
		"kez.ratelimit.>",    // rate-limit records
		"$KV.kez_presence.>", // presence writes (live changes come from kez.presence.*)
	}
	api := kez.UserAPIPrefix
	pubs := []string{
		// The door answers only for the caller's own key, and the inbox
		// stream is reached only through it.
		"kez.door." + B + ".send",
		"kez.door." + B + ".read",
		"kez.door." + B + ".ack",
		"kez.door." + B + ".stat",
		"kez.door.*.read",
		"kez.inbox." + B + "." + A,
		"kez.inbox." + A + "." + A,
		"kez.inbox." + B,
		"kez.live." + B + "." + A,
		api + ".DIRECT.GET." + inbox,
		api + ".DIRECT.GET." + inbox + ".kez.inbox." + B + "." + A,
		api + ".CONSUMER.MSG.NEXT." + inbox + "." + A,
		api + ".CONSUMER.INFO." + inbox + "." + A,
		"$JS.ACK." + inbox + "." + A + ".1.1.1.1.0",
		api + ".CONSUMER.MSG.NEXT." + inbox + "." + B,
		api + ".CONSUMER.INFO." + inbox + "." + B,
		api + ".CONSUMER.CREATE." + inbox + "." + A + ".kez.inbox." + A,
		api + ".STREAM.INFO." + inbox,
		api + ".STREAM.DELETE." + inbox,
		"$JS.API.CONSUMER.MSG.NEXT." + inbox + "." + A,
		"$JS.API.CONSUMER.MSG.NEXT." + inbox + "." + B,
		"$JS.API.CONSUMER.INFO." + inbox + "." + B,
		"$JS.ACK." + inbox + "." + B + ".1.1.1.1.0",
		"$JS.API.CONSUMER.CREATE." + inbox,
		"$JS.API.CONSUMER.CREATE." + inbox + "." + A,
		"$JS.API.CONSUMER.CREATE." + inbox + "." + A + ".kez.inbox." + A,
		"$JS.API.CONSUMER.CREATE." + inbox + ".evil.kez.inbox." + B,
		"$JS.API.CONSUMER.DURABLE.CREATE." + inbox + "." + A,
		"$JS.API.CONSUMER.DELETE." + inbox + "." + A,
		"$JS.API.CONSUMER.DELETE." + inbox + "." + B,
		"$JS.API.CONSUMER.PAUSE." + inbox + "." + B,
		"$JS.API.CONSUMER.LIST." + inbox,
		"$JS.API.CONSUMER.NAMES." + inbox,
		"$JS.API.STREAM.INFO." + inbox,
		"$JS.API.STREAM.MSG.GET." + inbox,
		"$JS.API.STREAM.MSG.DELETE." + inbox,
		"$JS.API.DIRECT.GET." + inbox,
		"$JS.API.DIRECT.GET." + inbox + ".kez.inbox." + B,
		"$JS.API.STREAM.CREATE.MIRROR",
		"$JS.API.STREAM.UPDATE." + inbox,
		"$JS.API.STREAM.PURGE." + inbox,
		"$JS.API.STREAM.SNAPSHOT." + inbox,
		"$JS.API.STREAM.RESTORE.COPY",
		"$JS.API.STREAM.LIST",
		"$JS.API.INFO",
		"$KV.kez_handles.alice",
		"$JS.API.DIRECT.GET.KV_kez_handles.$KV.kez_handles.bob",
		"$JS.API.STREAM.INFO.KV_kez_handles",
		"$JS.API.CONSUMER.CREATE.KV_kez_handles",
		"kez.registry.handle.evil",
		"$JS.API.STREAM.INFO." + streams.RegistryStream,
		"$SYS.REQ.USER.INFO",
		"$SYS.REQ.USER.AUTH",
		"_INBOX.steal",
		"_I." + B + ".fake",
		"kez.ratelimit.register.00000000",
		// Presence: only one's own entry is writable, only the presence
		// bucket readable, and only JetStream republishes live changes.
		kez.PresenceKeySubject(bob.Public()),
		"kez.presence." + A,
		"kez.presence." + B,
		"$JS.API.DIRECT.GET.KV_kez_presence.$KV.kez_presence." + B,
		"$JS.API.DIRECT.GET.KV_kez_presence",
		api + ".DIRECT.GET.KV_kez_presence",
		api + ".DIRECT.GET.KV_kez_handles.$KV.kez_handles.bob",
		api + ".DIRECT.GET." + inbox + ".kez.inbox." + B,
		api + ".STREAM.INFO.KV_kez_presence",
		api + ".STREAM.PURGE.KV_kez_presence",
		api + ".STREAM.MSG.DELETE.KV_kez_presence",
		api + ".CONSUMER.CREATE.KV_kez_presence",
		"$JS.API.STREAM.PURGE.KV_kez_presence",
		"$JS.API.CONSUMER.CREATE.KV_kez_presence",
	}
	for _, s := range subs {
		t.Run("sub "+s, func(t *testing.T) {
			sub, err := nc.SubscribeSync(s)
			if err == nil {
				defer sub.Unsubscribe()
			}
			nc.Flush()
			waitFor(t, func() bool { return e.violation(s) })
		})
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
			waitFor(t, func() bool { return e.violation(p) })
		})
	}
	if m, err := replies.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a refused request was answered: %s %s", m.Subject, m.Data)
	}
	// Control: alice's own allowed operations draw no violation.
	ctx := context.Background()
	_, wire, err := message.Seal(message.NewIdentity(alice), bob.Public(), message.Text("hi"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := client.Inbox{NC: nc, Me: alice.Public()}
	if _, err := in.Send(ctx, wire); err != nil {
		t.Fatalf("allowed send: %v", err)
	}
	if _, err := in.Unread(ctx); err != nil {
		t.Fatalf("allowed stat: %v", err)
	}
	if err := in.Drain(ctx, func(client.InboxMsg) error { return nil }); err != nil {
		t.Fatalf("allowed read: %v", err)
	}
	// Nothing alice attempted reached bob's inbox or created anything:
	// the inbox stream has no consumer at all.
	admin, _ := jetstream.New(st.ns.Connect(natskeys.KeyAdmin))
	s, _ := admin.Stream(ctx, inbox)
	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		t.Errorf("inbox consumer %q exists", n)
	}
	if n, err := (client.Inbox{NC: connectNC(t, st, bob), Me: bob.Public()}).Unread(ctx); err != nil || n != 1 {
		t.Errorf("bob's unread: %d, %v; want alice's one message", n, err)
	}
}

// connectNC is connect without the error collector.
func connectNC(t *testing.T, st *stack, key *kez.PrivateKey) *nats.Conn {
	nc, _ := connect(t, st, key)
	return nc
}

func TestRespondersFailOver(t *testing.T) {
	st := newStack(t, 2, nil)
	alice := st.register(t, "alice")
	closeServer(st.servers[0])
	for i := range 5 {
		nc, err := client.ConnectNATS(st.ns.ClientURL(), alice, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("connection %d with one responder left: %v", i, err)
		}
		nc.Close()
	}
	closeServer(st.servers[1])
	start := time.Now()
	_, err := client.ConnectNATS(st.ns.ClientURL(), alice, nats.MaxReconnects(0), nats.Timeout(10*time.Second))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("with no responder: %v, want authorization violation", err)
	}
	// nats.conf: authorization { timeout: 2 }.
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Fatalf("failed after %v, want about the 2s authorization timeout", d)
	}
}

func TestUserJWTExpiryReauthorises(t *testing.T) {
	st := newStack(t, 1, func(c *chatserver.Config) { c.UserJWTTTL = 2 * time.Second })
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	ctx := context.Background()
	reconnected := make(chan struct{}, 16)
	anc, _ := connect(t, st, alice, nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	bnc, _ := connect(t, st, bob)
	bin := client.Inbox{NC: bnc, Me: bob.Public()}

	// Bob keeps writing while alice's JWT expires twice.
	const n = 30
	for i := range n {
		_, wire, err := message.Seal(message.NewIdentity(bob), alice.Public(), message.Text(fmt.Sprintf("m%d", i)), time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bin.Send(ctx, wire); err != nil {
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
	waitFor(t, anc.IsConnected)
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
	st := newStack(t, 1, nil)
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	ctx := context.Background()
	bnc, _ := connect(t, st, bob)
	_, wire, err := message.Seal(message.NewIdentity(bob), alice.Public(), message.Text("for alice"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (client.Inbox{NC: bnc, Me: bob.Public()}).Send(ctx, wire); err != nil {
		t.Fatal(err)
	}
	nc, _ := connect(t, st, alice)
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

	admin, _ := jetstream.New(st.ns.Connect(natskeys.KeyAdmin))
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
	st := newStack(t, 2, nil)
	for i := range 10 {
		k, _ := kez.GenerateKey(nil)
		h, _ := kez.ParseHandle(fmt.Sprintf("quick%d", i), domain)
		body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
		resp, err := http.Post(st.servers[i%2].URL()+"/v1/register", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("register: %v %v", err, resp.Status)
		}
		resp.Body.Close()
		nc, err := client.ConnectNATS(st.ns.ClientURL(), k, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("sign-in %d right after registration: %v", i, err)
		}
		nc.Close()
	}
}

// TestUserLimits: the limits of nats/nats.conf's USERS account hold for
// a user signed in through the callout: the 1,025th subscription and a
// payload one byte over 64 KiB are refused by the broker, while the
// 1,024th and exactly 64 KiB pass, and another user is unaffected.
func TestUserLimits(t *testing.T) {
	st := newStack(t, 1, nil)
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	checkUserLimits(t, st.ns.ClientURL(), alice)
	// bob is unaffected.
	connect(t, st, bob)
}

// checkUserLimits signs in as key at url and checks that the broker
// takes 1,024 subscriptions and refuses the 1,025th, and takes a payload
// of 64 KiB and refuses one byte more.
func checkUserLimits(t *testing.T, url string, key *kez.PrivateKey) {
	t.Helper()
	e := &errs{}
	nc, err := client.ConnectNATS(url, key, nats.ErrorHandler(e.handler), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer nc.Close()
	const maxSubs, maxPayload = 1024, 64 << 10
	for i := range maxSubs {
		if _, err := nc.SubscribeSync(fmt.Sprintf("_I.%s.limit.%d", key.Public().Hex(), i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	for _, err := range e.list {
		t.Errorf("%s, within the limits: %v", url, err)
	}
	e.mu.Unlock()
	if _, err := nc.SubscribeSync(kez.UserInboxPrefix(key.Public()) + ".limit.over"); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, err := range e.list {
			if strings.Contains(strings.ToLower(err.Error()), "maximum subscriptions exceeded") {
				return true
			}
		}
		return false
	})

	// The broker enforces it on the wire (its INFO, sent before the
	// callout answered, still says 1 MB: nats.go does not check it).
	subj := kez.DoorSubject(key.Public(), kez.DoorStat)
	if resp := rawPublish(t, url, key, subj, maxPayload); strings.Contains(resp, "-ERR") {
		t.Errorf("%s, 64 KiB: %q", url, resp)
	}
	if resp := rawPublish(t, url, key, subj, maxPayload+1); !strings.Contains(resp, "Maximum Payload Violation") {
		t.Errorf("%s, 64 KiB + 1: the broker answered %q, want a maximum payload violation", url, resp)
	}
}

// rawPublish signs in as key at url over a plain TCP connection, speaking the
// NATS protocol itself (no client-side payload check), publishes n bytes
// to subj and returns what the broker answered to it.
func rawPublish(t *testing.T, url string, key *kez.PrivateKey, subj string, n int) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info); err != nil {
		t.Fatal(err)
	}
	connect, _ := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "protocol": 1, "headers": true,
		"nkey": key.Public().NKey(),
		"sig":  base64.RawURLEncoding.EncodeToString(key.Sign(kez.PurposeNATSAuth, []byte(info.Nonce))),
	})
	fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatalf("sign-in: %v", err)
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("sign-in: %s", line)
		}
	}
	fmt.Fprintf(conn, "PUB %s %d\r\n%s\r\nPING\r\n", subj, n, make([]byte, n))
	var got strings.Builder
	for {
		line, err = r.ReadString('\n')
		got.WriteString(line)
		if err != nil || strings.HasPrefix(line, "PONG") || strings.HasPrefix(line, "-ERR") {
			return got.String()
		}
	}
}

// TestConnectionCapPerKey: a key may hold MaxConnsPerKey connections at
// once, counted from the broker's connect and disconnect events across
// the replicas: the next one is refused while another key still signs
// in, and one closing makes room again.
func TestConnectionCapPerKey(t *testing.T) {
	st := newStack(t, 2, func(c *chatserver.Config) { c.MaxConnsPerKey = 3 })
	alice, bob := st.register(t, "alice"), st.register(t, "bob")
	var open []*nats.Conn
	for i := range 3 {
		nc, err := client.ConnectNATS(st.ns.ClientURL(), alice, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		defer nc.Close()
		open = append(open, nc)
	}
	time.Sleep(200 * time.Millisecond) // the connect events reach both replicas
	for range 2 {                      // whichever replica answers
		if nc, err := client.ConnectNATS(st.ns.ClientURL(), alice, nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("a 4th connection: %v, want an authorization violation", err)
		}
	}
	connect(t, st, bob)
	open[0].Close()
	waitFor(t, func() bool {
		nc, err := client.ConnectNATS(st.ns.ClientURL(), alice, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
}
