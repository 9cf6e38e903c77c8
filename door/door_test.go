package door_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/door"
	"kez.lat/kez/health"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// user is a registered key signed in to the broker as any client is.
type user struct {
	key *kez.PrivateKey
	id  *message.Identity
	in  client.Inbox
}

func register(t testing.TB, st *clienttest.Stack, name string) *user {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := kez.ParseHandle(name, clienttest.Domain)
	body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
	resp, err := http.Post(st.URL()+"/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: %s", name, resp.Status)
	}
	nc, err := client.ConnectNATS(st.NATS.ClientURL(), k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	id := message.NewIdentity(k)
	t.Cleanup(id.Close)
	return &user{key: k, id: id, in: client.Inbox{NC: nc, Me: k.Public()}}
}

// seal returns a text message from u to key.
func (u *user) seal(t testing.TB, to kez.PublicKey, text string) []byte {
	t.Helper()
	_, wire, err := message.Seal(u.id, to, message.Text(text), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// refused asserts that err is the door's refusal with code.
func refused(t testing.TB, what string, err error, code string) {
	t.Helper()
	var de *client.DoorError
	if !errors.As(err, &de) || de.Code != code {
		t.Fatalf("%s: %v, want the door's %q", what, err, code)
	}
}

// stored returns how many messages the inbox stream holds.
func stored(t testing.TB, st *clienttest.Stack) uint64 {
	t.Helper()
	js, _ := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	s, err := js.Stream(context.Background(), kez.InboxStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// texts reads, opens and acks u's whole inbox.
func (u *user) texts(t testing.TB) []string {
	t.Helper()
	var out []string
	err := u.in.Drain(context.Background(), func(m client.InboxMsg) error {
		env, err := message.Parse(m.Data)
		if err != nil {
			return err
		}
		pt, err := env.Open(u.id, env.From)
		if err != nil {
			return err
		}
		out = append(out, pt.Body())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDoorStoresOnlyWhatChecksOut: garbage, a message whose sender is not
// the caller, a bad signature and an unregistered recipient are refused
// with their codes and store nothing; a good message is stored once,
// however often it is sent.
func TestDoorStoresOnlyWhatChecksOut(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob, mallory := register(t, st, "alice"), register(t, st, "bob"), register(t, st, "mallory")
	stranger, _ := kez.GenerateKey(nil)

	refused(t, "garbage", sendRaw(alice, []byte("not an envelope")), kez.DoorMalformed)
	refused(t, "empty", sendRaw(alice, nil), kez.DoorMalformed)
	refused(t, "bob's message sent by mallory", sendRaw(mallory, bob.seal(t, alice.key.Public(), "hi")), kez.DoorSenderMismatch)
	forged := mallory.seal(t, bob.key.Public(), "hi")
	env, _ := message.Parse(forged)
	env.Sig[7] ^= 1
	bad, _ := env.Marshal()
	refused(t, "bad signature", sendRaw(mallory, bad), kez.DoorBadSignature)
	refused(t, "unregistered recipient", sendRaw(alice, alice.seal(t, stranger.Public(), "hi")), kez.DoorUnknownRecipient)
	if n := stored(t, st); n != 0 {
		t.Fatalf("refused sends stored %d messages", n)
	}

	wire := alice.seal(t, bob.key.Public(), "hello bob")
	r1, err := alice.in.Send(ctx, wire)
	if err != nil || r1.Duplicate {
		t.Fatalf("send: %+v, %v", r1, err)
	}
	r2, err := alice.in.Send(ctx, wire)
	if err != nil || !r2.Duplicate || r2.ID != r1.ID {
		t.Fatalf("the same message again: %+v, %v; want a duplicate of %s", r2, err, r1.ID)
	}
	if n, err := bob.in.Unread(ctx); err != nil || n != 1 {
		t.Fatalf("bob's unread = %d, %v; want 1", n, err)
	}
	if n, err := alice.in.Unread(ctx); err != nil || n != 0 {
		t.Fatalf("alice's unread = %d, %v; want 0 (nobody wrote to her)", n, err)
	}
	if got := bob.texts(t); len(got) != 1 || got[0] != "hello bob" {
		t.Fatalf("bob read %q", got)
	}
	if n := stored(t, st); n != 0 {
		t.Fatalf("after bob's ack the stream holds %d messages", n)
	}
}

func sendRaw(u *user, wire []byte) error {
	_, err := u.in.Send(context.Background(), wire)
	return err
}

// TestDoorNoMetadataOracle: JetStream's publish headers, sent to the door
// with a request, reach nothing: no expected-sequence answer reveals the
// state of another inbox, no TTL, roll-up, schedule or batch applies, and
// reusing another sender's message id suppresses nothing. Every answer
// is the same {"id"} a plain send gets.
func TestDoorNoMetadataOracle(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob, mallory := register(t, st, "alice"), register(t, st, "bob"), register(t, st, "mallory")
	aliceWire := alice.seal(t, bob.key.Public(), "from alice")
	if _, err := alice.in.Send(ctx, aliceWire); err != nil {
		t.Fatal(err)
	}
	aliceEnv, _ := message.Parse(aliceWire)
	victim := kez.InboxMsgSubject(bob.key.Public(), alice.key.Public())
	headers := []nats.Header{
		{"Nats-Expected-Last-Subject-Sequence": {"0"}, "Nats-Expected-Last-Subject-Sequence-Subject": {victim}},
		{"Nats-Expected-Last-Subject-Sequence": {"1"}, "Nats-Expected-Last-Subject-Sequence-Subject": {victim}},
		{"Nats-Expected-Last-Sequence": {"0"}},
		{"Nats-Expected-Stream": {"NOT_THE_STREAM"}},
		{"Nats-Expected-Last-Msg-Id": {"nope"}},
		{"Nats-Msg-Id": {aliceEnv.DedupKey()}},
		{"Nats-TTL": {"1s"}},
		{"Nats-Rollup": {"all"}},
		{"Nats-Rollup": {"sub"}},
		{"Nats-Schedule": {"@at 2030-01-01T00:00:00Z"}, "Nats-Schedule-Target": {victim}},
		{"Nats-Batch-Id": {"b1"}, "Nats-Batch-Sequence": {"1"}, "Nats-Batch-Commit": {"1"}},
		{"Nats-Marker-Reason": {"Remove"}},
	}
	for i, h := range headers {
		msg := nats.NewMsg(kez.DoorSubject(mallory.key.Public(), kez.DoorSend))
		msg.Header = h
		msg.Data = mallory.seal(t, bob.key.Public(), fmt.Sprintf("mallory %d", i))
		resp, err := mallory.in.NC.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Errorf("headers %v: refused %s %s", h, code, resp.Header.Get("Nats-Service-Error"))
		}
		var body map[string]any
		if err := json.Unmarshal(resp.Data, &body); err != nil || len(body) != 1 || body["id"] == nil {
			t.Errorf("headers %v: answer %s; want only the id", h, resp.Data)
		}
		// The id is random base64 and may spell anything; the rest of the
		// answer and its headers must not name a sequence or a stream.
		id, _ := body["id"].(string)
		rest := strings.ToLower(strings.Replace(string(resp.Data), id, "", 1) + fmt.Sprint(resp.Header))
		for _, leak := range []string{"seq", "stream", "wrong last"} {
			if strings.Contains(rest, leak) {
				t.Errorf("headers %v: answer %s mentions %q", h, resp.Data, leak)
			}
		}
	}
	// Every message is there, alice's first, and nothing was rolled up,
	// expired or scheduled.
	time.Sleep(1500 * time.Millisecond) // a TTL of 1s, had it applied
	got := bob.texts(t)
	if len(got) != len(headers)+1 || got[0] != "from alice" {
		t.Fatalf("bob read %d messages (%q), want alice's and %d of mallory's", len(got), got, len(headers))
	}
}

// TestDoorFlood: a stranger sending as fast as it can fills only its own
// share of the victim's inbox: a contact's message is still taken, and
// the stranger's total across inboxes stays within its quota, so the
// broker's bytes stay bounded. Reading gives the share back.
func TestDoorFlood(t *testing.T) {
	const share, total = 20, 50
	st := clienttest.StartWith(t, func(c *chatserver.Config) {
		c.Streams.InboxMaxMsgs = share
		c.Streams.SenderMaxMsgs = total
	})
	ctx := context.Background()
	victim, contact, flooder := register(t, st, "victim"), register(t, st, "contact"), register(t, st, "flooder")
	others := []*user{register(t, st, "other1"), register(t, st, "other2"), register(t, st, "other3")}

	flood := func(to kez.PublicKey, n int) (ok int, codes map[string]int) {
		codes = map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					_, err := flooder.in.Send(ctx, flooder.seal(t, to, strings.Repeat("x", 1000)))
					mu.Lock()
					var de *client.DoorError
					switch {
					case err == nil:
						ok++
					case errors.As(err, &de):
						codes[de.Code]++
					default:
						t.Errorf("flood: %v", err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return ok, codes
	}
	ok, codes := flood(victim.key.Public(), 200)
	if ok != share || codes[kez.DoorInboxShareFull] != 200-share {
		t.Fatalf("flooding one inbox: %d stored, refusals %v; want %d stored", ok, codes, share)
	}
	if _, err := contact.in.Send(ctx, contact.seal(t, victim.key.Public(), "a contact's message")); err != nil {
		t.Fatalf("the contact's message during the flood: %v", err)
	}
	// Across inboxes the flooder's total is capped.
	stored := share
	for _, o := range others {
		n, codes := flood(o.key.Public(), share)
		stored += n
		if n < share && codes[kez.DoorSenderQuota] == 0 {
			t.Fatalf("flooding another inbox: %d stored, refusals %v", n, codes)
		}
	}
	if stored != total {
		t.Fatalf("the flooder holds %d unread messages, want its quota %d", stored, total)
	}
	// The victim reads: the flooder's share and quota come back.
	got := victim.texts(t)
	if len(got) != share+1 || !slices.Contains(got, "a contact's message") {
		t.Fatalf("the victim read %d messages", len(got))
	}
	if _, err := flooder.in.Send(ctx, flooder.seal(t, victim.key.Public(), "after reading")); err != nil {
		t.Fatalf("after the victim read: %v", err)
	}
}

// follower is a user's client following its inbox in the background.
type follower struct {
	mu     sync.Mutex
	got    []string
	cancel context.CancelFunc
	done   chan error
}

// follow starts u's client following its inbox, and waits for its live
// subscription and first backlog read.
func follow(u *user) *follower {
	f := &follower{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		f.done <- u.in.Follow(ctx, func(m client.InboxMsg) error {
			f.mu.Lock()
			f.got = append(f.got, string(m.Data))
			f.mu.Unlock()
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond)
	return f
}

// taken returns what the client took so far.
func (f *follower) taken() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// stop stops following and fails t if Follow failed.
func (f *follower) stop(t testing.TB) {
	t.Helper()
	f.cancel()
	if err := <-f.done; err != nil {
		t.Fatal(err)
	}
}

// TestDoorReflection: a request whose reply subject is another user's live
// subject (or another user's door subject) makes the door's answer land
// there; the victim's client never takes it for a message, and nothing of
// the victim's changes.
func TestDoorReflection(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob, mallory := register(t, st, "alice"), register(t, st, "bob"), register(t, st, "mallory")
	f := follow(bob)
	B, A, M := bob.key.Public().Hex(), alice.key.Public().Hex(), mallory.key.Public().Hex()
	mwire := mallory.seal(t, alice.key.Public(), "to alice")
	for _, reply := range []string{"kez.live." + B + "." + A, "kez.live." + B + "." + M, "kez.door." + B + ".ack", "kez.door." + B + ".send"} {
		for _, op := range []struct {
			name string
			body []byte
		}{{kez.DoorRead, nil}, {kez.DoorStat, nil}, {kez.DoorSend, mwire}, {kez.DoorSend, []byte("garbage")}} {
			if err := mallory.in.NC.PublishRequest(kez.DoorSubject(mallory.key.Public(), op.name), reply, op.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	mallory.in.NC.Flush()
	time.Sleep(500 * time.Millisecond)
	// A real message still arrives, alone.
	wire := alice.seal(t, bob.key.Public(), "real")
	if _, err := alice.in.Send(ctx, wire); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.taken()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	f.stop(t)
	if got := f.taken(); len(got) != 1 || got[0] != string(wire) {
		t.Fatalf("bob's client took %d messages: %q", len(got), got)
	}
	if n, err := bob.in.Unread(ctx); err != nil || n != 0 {
		t.Fatalf("bob's unread = %d, %v; want 0", n, err)
	}
}

// TestNoJetStreamObjectPerUser: registering, signing in and writing more
// users creates no stream, consumer or bucket; the inbox stream has no
// consumer at all.
func TestNoJetStreamObjectPerUser(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	js, _ := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	var users []*user
	for i := range 20 {
		users = append(users, register(t, st, fmt.Sprintf("first%d", i)))
	}
	if _, err := users[0].in.Send(ctx, users[0].seal(t, users[1].key.Public(), "hi")); err != nil {
		t.Fatal(err)
	}
	// Stream names, not the account's count: a probe stream comes and
	// goes when a probe write goes unanswered on a loaded machine.
	streamNames := func() map[string]bool {
		names := map[string]bool{}
		l := js.StreamNames(ctx)
		for n := range l.Name() {
			names[n] = true
		}
		for _, n := range streams.ProbeStreams {
			delete(names, n)
		}
		if l.Err() != nil {
			t.Fatal(l.Err())
		}
		return names
	}
	beforeNames := streamNames()
	before, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		users = append(users, register(t, st, fmt.Sprintf("user%d", i)))
	}
	if _, err := users[0].in.Send(ctx, users[0].seal(t, users[1].key.Public(), "hi")); err != nil {
		t.Fatal(err)
	}
	after, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for n := range streamNames() {
		if !beforeNames[n] {
			t.Errorf("100 more users made stream %s", n)
		}
	}
	if after.Consumers != before.Consumers {
		t.Fatalf("100 more users made consumers %d -> %d", before.Consumers, after.Consumers)
	}
	s, _ := js.Stream(ctx, kez.InboxStream)
	for name := range s.ConsumerNames(ctx).Name() {
		t.Errorf("inbox consumer %q", name)
	}
}

// TestUpgradeInPlace: an inbox stream as the release before the door made
// it (one subject per user, a durable consumer per user, unread messages
// waiting) upgrades when the new home server starts: the messages are
// delivered through the door, the consumers are gone, and a second
// migration changes nothing.
func TestUpgradeInPlace(t *testing.T) {
	ctx := context.Background()
	js, alice, bob, want := oldInbox(t, 3)
	if _, err := js.Publish(ctx, kez.InboxSubject(bob.Public()), []byte("garbage of old")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*kez.PrivateKey{alice, bob} {
		if _, err := js.CreateOrUpdateConsumer(ctx, kez.InboxStream, jetstream.ConsumerConfig{
			Durable: k.Public().Hex(), FilterSubject: kez.InboxSubject(k.Public()), AckPolicy: jetstream.AckExplicitPolicy,
		}); err != nil {
			t.Fatal(err)
		}
	}

	cfg := streams.DefaultConfig()
	if _, err := streams.Setup(ctx, js, cfg); err != nil {
		t.Fatalf("setup over the old stream: %v", err)
	}
	m, err := door.MigrateLegacy(ctx, js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if m != (door.Migration{Moved: 3, Dropped: 1, Consumers: 2}) {
		t.Fatalf("migration %+v, want 3 moved, 1 dropped, 2 consumers removed", m)
	}
	if again, err := door.MigrateLegacy(ctx, js, slog.New(slog.DiscardHandler)); err != nil || again != (door.Migration{}) {
		t.Fatalf("second migration %+v, %v; want nothing", again, err)
	}
	s, _ := js.Stream(ctx, kez.InboxStream)
	info, _ := s.Info(ctx, jetstream.WithSubjectFilter(kez.InboxFilter(bob.Public())))
	if info.State.Msgs != 3 || len(info.State.Subjects) != 1 {
		t.Fatalf("after the migration: %d messages on %v", info.State.Msgs, info.State.Subjects)
	}
	got := readAll(t, js, bob)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("bob's old messages after the upgrade: %q, want %q", got, want)
	}
}

// TestUpgradeKeepsLongInboxes: an old inbox holding more messages than
// the door's per-sender share allows loses none at the upgrade: the
// stream keeps its old per-subject limit through setup (lowering it
// would have the broker delete the oldest, unread) and the migration,
// while the sender's new subject holds more than the share, and takes
// the configured share once the recipient has read down to it.
func TestUpgradeKeepsLongInboxes(t *testing.T) {
	const share = 3
	ctx := context.Background()
	js, alice, bob, want := oldInbox(t, 5)
	cfg := streams.DefaultConfig()
	cfg.InboxMaxMsgs = share
	if _, err := streams.Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	limit := func() int64 {
		s, err := js.Stream(ctx, kez.InboxStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.MaxMsgsPerSubject
	}
	if m, err := door.MigrateLegacy(ctx, js, slog.New(slog.DiscardHandler)); err != nil || m != (door.Migration{Moved: 5}) {
		t.Fatalf("migration %+v, %v; want 5 moved", m, err)
	}
	if got := readAll(t, js, bob); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("bob's old messages after the upgrade: %q, want %q", got, want)
	}
	if kept, err := streams.ApplyInboxConfig(ctx, js, cfg); err != nil || !kept || limit() != 10_000 {
		t.Fatalf("config with 5 unread from one sender: kept %v, %v, limit %d; want the old 10,000 kept", kept, err, limit())
	}
	// A start that moves nothing (setup alone) reports it too, for the
	// operator's warning.
	if kept, err := streams.Setup(ctx, js, cfg); err != nil || !kept || limit() != 10_000 {
		t.Fatalf("setup with 5 unread from one sender: kept %v, %v, limit %d; want the old 10,000 kept", kept, err, limit())
	}
	// Bob reads the first two.
	s, _ := js.Stream(ctx, kez.InboxStream)
	first, err := s.GetLastMsgForSubject(ctx, kez.InboxMsgSubject(bob.Public(), alice.Public()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(kez.InboxMsgSubject(bob.Public(), alice.Public())), jetstream.WithPurgeSequence(first.Sequence-2)); err != nil {
		t.Fatal(err)
	}
	if kept, err := streams.ApplyInboxConfig(ctx, js, cfg); err != nil || kept || limit() != share {
		t.Fatalf("config once read down to the share: kept %v, %v, limit %d; want %d", kept, err, limit(), share)
	}
	if kept, err := streams.Setup(ctx, js, cfg); err != nil || kept {
		t.Fatalf("setup once read down to the share: kept %v, %v", kept, err)
	}
	if got := readAll(t, js, bob); strings.Join(got, ",") != strings.Join(want[2:], ",") {
		t.Fatalf("bob's messages after the limit was lowered: %q, want %q", got, want[2:])
	}
}

// oldInbox starts a server with the inbox stream of the release before
// the door, holding n messages from alice to bob ("old 0", "old 1", ...)
// on bob's one subject; it returns the admin's JetStream, both keys and
// the texts in order.
func oldInbox(t *testing.T, n int) (jetstream.JetStream, *kez.PrivateKey, *kez.PrivateKey, []string) {
	t.Helper()
	ns := natstest.Start(t)
	js, _ := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	legacyStream(t, js)
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)
	aid := message.NewIdentity(alice)
	defer aid.Close()
	var want []string
	for i := range n {
		text := fmt.Sprintf("old %d", i)
		_, wire, _ := message.Seal(aid, bob.Public(), message.Text(text), time.Now(), nil)
		if _, err := js.Publish(context.Background(), kez.InboxSubject(bob.Public()), wire); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	return js, alice, bob, want
}

// legacyStream makes the inbox stream of the release before the door.
func legacyStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: kez.InboxStream, Subjects: []string{"kez.inbox.*"}, Storage: jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy, MaxAge: 30 * 24 * time.Hour, MaxMsgsPerSubject: 10_000,
		Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxMsgSize: 64 << 10, MaxBytes: 10 << 30,
		MaxConsumers: 100_000_000, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeChecksLegacyMessages: before the door anyone could publish
// to kez.inbox.<user>. The upgrade drops a forgery naming another sender
// (it would take that sender's share of the inbox and her quota) and a
// message addressed to someone else; a message whose sender's share of
// the inbox is full stays on the old subject, without an error (the
// server retried the migration forever), and moves at a later one once
// the recipient read.
func TestUpgradeChecksLegacyMessages(t *testing.T) {
	const share = 3
	ctx := context.Background()
	js, alice, bob, _ := oldInbox(t, 0)
	carol, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	aid, mid := message.NewIdentity(alice), message.NewIdentity(mallory)
	defer aid.Close()
	defer mid.Close()
	seal := func(id *message.Identity, to kez.PublicKey, text string) []byte {
		_, wire, err := message.Seal(id, to, message.Text(text), time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return wire
	}
	forged, _ := message.Parse(seal(mid, bob.Public(), "forged"))
	forged.From = alice.Public()
	forgedWire, err := forged.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	legacy := kez.InboxSubject(bob.Public())
	for _, wire := range [][]byte{forgedWire, seal(aid, carol.Public(), "for carol"), seal(aid, bob.Public(), "old")} {
		if _, err := js.Publish(ctx, legacy, wire); err != nil {
			t.Fatal(err)
		}
	}
	cfg := streams.DefaultConfig()
	cfg.InboxMaxMsgs = share
	if _, err := streams.Setup(ctx, js, cfg); err != nil {
		t.Fatalf("setup over the old stream: %v", err)
	}
	// Alice's share of bob's inbox is full already.
	for i := range share {
		if _, err := js.Publish(ctx, kez.InboxMsgSubject(bob.Public(), alice.Public()), seal(aid, bob.Public(), fmt.Sprint("new ", i))); err != nil {
			t.Fatal(err)
		}
	}
	m, err := door.MigrateLegacy(ctx, js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("migration with a full share: %v", err)
	}
	if m != (door.Migration{Dropped: 1, Forged: 1, Kept: 1}) {
		t.Fatalf("migration %+v, want 1 dropped, 1 forged, 1 kept", m)
	}
	s, _ := js.Stream(ctx, kez.InboxStream)
	if info, _ := s.Info(ctx, jetstream.WithSubjectFilter(legacy)); info.State.Subjects[legacy] != 1 {
		t.Fatalf("the old subject holds %d messages, want the one kept", info.State.Subjects[legacy])
	}
	// Bob reads; the next migration moves the kept message.
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(kez.InboxMsgSubject(bob.Public(), alice.Public()))); err != nil {
		t.Fatal(err)
	}
	m, err = door.MigrateLegacy(ctx, js, slog.New(slog.DiscardHandler))
	if err != nil || m != (door.Migration{Moved: 1}) {
		t.Fatalf("migration after bob read: %+v, %v; want 1 moved", m, err)
	}
	if got := readAll(t, js, bob); strings.Join(got, ",") != "old" {
		t.Fatalf("bob's inbox after the upgrade: %q, want the old message alone", got)
	}
	if info, _ := s.Info(ctx, jetstream.WithSubjectFilter(streams.LegacyInboxSubjects)); len(info.State.Subjects) != 0 {
		t.Fatalf("old subjects left: %v", info.State.Subjects)
	}
}

// readAll reads key's messages in order straight from the stream.
func readAll(t *testing.T, js jetstream.JetStream, key *kez.PrivateKey) []string {
	t.Helper()
	id := message.NewIdentity(key)
	defer id.Close()
	var out []string
	msgs, err := jetstreamext.GetBatch(context.Background(), js, kez.InboxStream, 100, jetstreamext.GetBatchSubject(kez.InboxFilter(key.Public())))
	if err != nil {
		t.Fatal(err)
	}
	for msg, err := range msgs {
		if err != nil {
			t.Fatal(err)
		}
		env, err := message.Parse(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := env.Open(id, env.From)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pt.Body())
	}
	return out
}

// TestDoorStoreFailures: a store that takes a message and never answers
// (nats-server drops a write it cannot store) is refused as unavailable
// within streams.StoreWait, not at the caller's timeout; an inbox stream
// found missing is created again (the keeper), and sends work again.
func TestDoorStoreFailures(t *testing.T) {
	st := clienttest.Start(t)
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	ctx := context.Background()
	unsilence := silenceInbox(t, st)
	start := time.Now()
	_, err := alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "into the void"))
	took := time.Since(start)
	refused(t, "send to a store that does not answer", err, kez.DoorUnavailable)
	if took < streams.StoreWait || took > streams.StoreWait+time.Second {
		t.Errorf("refused after %v, want about %v", took, streams.StoreWait)
	}
	if !strings.Contains(err.Error(), "cannot store right now") {
		t.Errorf("refusal %q", err)
	}

	unsilence()
	_, err = alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "no stream"))
	refused(t, "send with the inbox stream missing", err, kez.DoorUnavailable)
	sendsAfterRepair(t, st, alice, bob, "again")
}

// silenceInbox deletes the inbox stream and takes its subjects with a
// subscription that never answers: a store that takes a write and says
// nothing. unsilence ends that; the keeper then makes the stream again.
func silenceInbox(t *testing.T, st *clienttest.Stack) (unsilence func()) {
	t.Helper()
	admin := st.NATS.Connect(natskeys.KeyAdmin)
	js, _ := jetstream.New(admin)
	if err := js.DeleteStream(context.Background(), kez.InboxStream); err != nil {
		t.Fatal(err)
	}
	silent, err := admin.SubscribeSync("kez.inbox.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() {
		silent.Unsubscribe()
		admin.Flush()
	}
}

// sendsAfterRepair waits for the keeper to make the inbox stream again
// and checks that alice's message text then reaches bob, alone.
func sendsAfterRepair(t *testing.T, st *clienttest.Stack, alice, bob *user, text string) {
	t.Helper()
	select {
	case <-st.Chat.Keeper.Ran():
	case <-time.After(20 * time.Second):
		t.Fatal("the keeper did not create the inbox stream again")
	}
	if _, err := alice.in.Send(context.Background(), alice.seal(t, bob.key.Public(), text)); err != nil {
		t.Fatalf("send after the keeper ran: %v", err)
	}
	if got := bob.texts(t); len(got) != 1 || got[0] != text {
		t.Fatalf("bob reads %q, want the message sent after the repair", got)
	}
}

// TestDoorStoreRefusesWrites: while the replica's store probe finds the
// store refusing writes (a disk that cannot stage batches, as one full or
// failing below max_file_store), a send the store does not answer is
// refused as store_unavailable within streams.StoreWait and a second;
// once the probe passes again, no longer, and sends are stored.
func TestDoorStoreRefusesWrites(t *testing.T) {
	st := clienttest.Start(t)
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	ready := func() (int, string) {
		t.Helper()
		resp, err := http.Get(st.URL() + "/v1/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for i := 0; ; i++ { // the first probe makes the probe stream
		if code, body := ready(); code == http.StatusOK {
			break
		} else if i == 50 {
			t.Fatalf("readiness of a new stack: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	unblock := st.NATS.BlockBatches("KEZ_HEALTH")
	time.Sleep(1100 * time.Millisecond) // the healthy probe's result expires
	if code, body := ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, "KEZ_HEALTH") {
		t.Fatalf("readiness while the store cannot stage batches: %d %s", code, body)
	}

	unsilence := silenceInbox(t, st)
	start := time.Now()
	_, err := alice.in.Send(context.Background(), alice.seal(t, bob.key.Public(), "onto a failing disk"))
	took := time.Since(start)
	refused(t, "send while the store refuses writes", err, kez.DoorStoreUnavailable)
	if took > streams.StoreWait+time.Second {
		t.Errorf("refused after %v, want within %v", took, streams.StoreWait+time.Second)
	}

	unblock()
	unsilence()
	time.Sleep(1100 * time.Millisecond)
	ready() // probes the store again, and has the keeper make the inbox stream
	sendsAfterRepair(t, st, alice, bob, "repaired")
}

// TestFollowAcksLive: messages a follower takes live are acked in the
// background while it follows (not only at a backlog read or when it
// stops), once each and in order, so that a burst leaves nothing unread
// and nothing is taken twice.
func TestFollowAcksLive(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	f := follow(bob)
	const n = 50
	var want []string
	for i := range n {
		wire := alice.seal(t, bob.key.Public(), fmt.Sprint("burst ", i))
		if _, err := alice.in.Send(ctx, wire); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(wire))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		k := len(f.taken())
		unread, err := bob.in.Unread(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if k == n && unread == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("while following: took %d of %d, %d unread", k, n, unread)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.stop(t)
	if got := f.taken(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("bob took %d messages, not the %d sent once each in order", len(got), n)
	}
}

// TestDoorReadFormats: the binary read answer carries what the JSON one
// does, page by page, and Drain takes a backlog of several pages in
// order, once each, acking only what its function took.
func TestDoorReadFormats(t *testing.T) {
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.Streams.InboxMaxMsgs = 1000 })
	ctx := context.Background()
	alice, bob, carol := register(t, st, "alice"), register(t, st, "bob"), register(t, st, "carol")
	const n = 130 // each: two senders' messages fill more than two pages
	for i := range n {
		for _, u := range []*user{alice, carol} {
			if _, err := u.in.Send(ctx, u.seal(t, bob.key.Public(), fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for after := uint64(0); ; {
		req := func(format string) *nats.Msg {
			body, _ := json.Marshal(kez.ReadRequest{After: after, Format: format})
			m, err := bob.in.NC.Request(kez.DoorSubject(bob.key.Public(), kez.DoorRead), body, 10*time.Second)
			if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
				t.Fatalf("read after %d (%q): %v %v", after, format, err, m.Header)
			}
			return m
		}
		var js kez.ReadReply
		if err := json.Unmarshal(req("").Data, &js); err != nil {
			t.Fatal(err)
		}
		bin, more, err := kez.ParseReadReply(req(kez.ReadFormatBinary).Data)
		if err != nil || more != js.More || len(bin) != len(js.Msgs) {
			t.Fatalf("after %d: binary %d messages, more %v, %v; JSON %d, more %v", after, len(bin), more, err, len(js.Msgs), js.More)
		}
		for i, m := range bin {
			j := js.Msgs[i]
			if m.Seq != j.Seq || fmt.Sprintf("%x", m.Sender) != j.Sender || !bytes.Equal(m.Data, j.Data) {
				t.Fatalf("after %d, message %d: binary seq %d sender %x, JSON %+v", after, i, m.Seq, m.Sender, j.Seq)
			}
		}
		if !more {
			break
		}
		after = bin[len(bin)-1].Seq
	}

	// fn fails at carol's message "100", the 202nd (after alice's 0-100
	// and carol's 0-99): everything before it is acked (across pages),
	// it and everything after stay unread.
	stop := errors.New("stop")
	var got []string
	err := bob.in.Drain(ctx, func(m client.InboxMsg) error {
		env, err := message.Parse(m.Data)
		if err != nil {
			return err
		}
		pt, err := env.Open(bob.id, env.From)
		if err != nil {
			return err
		}
		if env.From.Equal(carol.key.Public()) && pt.Body() == "100" {
			return stop
		}
		got = append(got, pt.Body())
		return nil
	})
	const taken = 201
	if !errors.Is(err, stop) || len(got) != taken {
		t.Fatalf("Drain took %d, %v; want %d and the function's error", len(got), err, taken)
	}
	if u, err := bob.in.Unread(ctx); err != nil || u != 2*n-taken {
		t.Fatalf("unread after a failed Drain = %d, %v; want %d", u, err, 2*n-taken)
	}
	rest := bob.texts(t)
	if len(rest) != 2*n-taken || rest[0] != "100" {
		t.Fatalf("then read %d, first %q; want %d from carol's 100", len(rest), rest[:1], 2*n-taken)
	}
	if u, err := bob.in.Unread(ctx); err != nil || u != 0 {
		t.Fatalf("unread after Drain = %d, %v", u, err)
	}
}

// TestFollowAfterStreamMadeAgain: the keeper makes a lost inbox stream
// again, and its sequences start again at 1. A follower that took
// messages up to sequence 5 before must take the new ones, not skip
// them as repeats by their sequence and ack them unread, nor take a
// live one whose predecessor it missed.
func TestFollowAfterStreamMadeAgain(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	f := follow(bob)
	var want []string
	send := func(text string) {
		t.Helper()
		wire := alice.seal(t, bob.key.Public(), text)
		if _, err := alice.in.Send(ctx, wire); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(wire))
	}
	waitTaken := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := f.taken()
			slices.Sort(got)
			got = slices.Compact(got)
			unread, err := bob.in.Unread(ctx)
			if err == nil && len(got) == len(want) && unread == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("took %d of %d messages, %d unread (%v)", len(got), len(want), unread, err)
			}
		}
	}
	for i := range 5 {
		send(fmt.Sprint("before ", i))
	}
	waitTaken()

	js, err := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, kez.InboxStream); err != nil {
		t.Fatal(err)
	}
	_, err = alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "no stream"))
	refused(t, "send with the inbox stream missing", err, kez.DoorUnavailable)
	select {
	case <-st.Chat.Keeper.Ran():
	case <-time.After(20 * time.Second):
		t.Fatal("the keeper did not make the stream again")
	}
	// The live copy of the first new message is missed (as around a
	// leader change): stored with the stream's republish off. The next
	// one, live, must not be taken directly, and its ack purge the one
	// before it unread.
	s, err := js.Stream(ctx, kez.InboxStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	off := cfg
	off.RePublish = nil
	if _, err := js.UpdateStream(ctx, off); err != nil {
		t.Fatal(err)
	}
	send("after 0, its live copy missed")
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		send(fmt.Sprint("after ", i+1))
	}
	waitTaken()
	f.stop(t)
}

// TestAckOfNothingWritesNothing: an ack that would remove nothing (an
// empty subject, or a sequence below the subject's first message) is
// answered without a purge, which would be a write of the stream on
// every replica; an ack that removes messages purges them.
func TestAckOfNothingWritesNothing(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	admin := st.NATS.Connect(natskeys.KeyAdmin)
	purges, err := admin.SubscribeSync("$JS.API.STREAM.PURGE." + kez.InboxStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	ack := func(seq uint64) {
		t.Helper()
		if err := bob.in.Ack(ctx, client.InboxMsg{Seq: seq, Sender: alice.key.Public()}); err != nil {
			t.Fatal(err)
		}
	}
	noPurge := func(what string) {
		t.Helper()
		if m, err := purges.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("%s: purged (%s)", what, m.Data)
		}
	}
	ack(1 << 40)
	noPurge("an ack of an empty inbox")

	// Someone else's message first: bob's first has a sequence above 1.
	carol := register(t, st, "carol")
	if _, err := alice.in.Send(ctx, alice.seal(t, carol.key.Public(), "to carol")); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := alice.in.Send(ctx, alice.seal(t, bob.key.Public(), fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []client.InboxMsg
	if err := bob.in.Drain(ctx, func(m client.InboxMsg) error { msgs = append(msgs, m); return errors.New("keep") }); err == nil || len(msgs) != 1 {
		t.Fatalf("read %d messages, %v", len(msgs), err)
	}
	ack(msgs[0].Seq - 1)
	noPurge("an ack below the first message")
	ack(msgs[0].Seq)
	if _, err := purges.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("an ack of a message: no purge (%v)", err)
	}
	if n, err := bob.in.Unread(ctx); err != nil || n != 1 {
		t.Fatalf("unread after acking the first of 2: %d, %v", n, err)
	}
}

// TestDoorInboxKeepsWriteError: a full disk (a tmpfs below
// max_file_store) makes the inbox stream fail a write, and nats-server
// then drops every write to it until it restarts, even once the disk has
// room again and the store probe passes. Meanwhile a send is refused as
// store_unavailable naming the stream and the restart, and readiness is
// red on stream:KEZ_INBOX saying so (not green, as the store probe and
// the stream's leader alone would have it); after a restart of
// nats-server, readiness is green again and sends are stored.
func TestDoorInboxKeepsWriteError(t *testing.T) {
	mnt, ok := natstest.Tmpfs(t, 48<<20)
	if !ok {
		return // ran in a user namespace of its own (natstest.Tmpfs)
	}
	st := clienttest.StartWithNATS(t, natstest.OnSmallDisk(mnt), func(c *chatserver.Config) { c.Streams.InboxMaxBytes = 16 << 20 })
	alice, bob := register(t, st, "alice"), register(t, st, "bob")
	ctx := context.Background()
	ready := func() health.Report {
		t.Helper()
		resp, err := http.Get(st.URL() + "/v1/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r health.Report
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// waitReady waits until readiness's failing checks satisfy ok.
	waitReady := func(what string, ok func(failing []string) bool) health.Report {
		t.Helper()
		for i := 0; ; i++ {
			r := ready()
			if ok(r.Failing) {
				return r
			}
			if i == 60 {
				t.Fatalf("readiness %s: still %v %v", what, r.Failing, r.Checks)
			}
			time.Sleep(500 * time.Millisecond) // a report stands a second
		}
	}
	waitReady("of a new stack", func(f []string) bool { return len(f) == 0 })
	if _, err := alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "before")); err != nil {
		t.Fatalf("send to a healthy store: %v", err)
	}

	free := natstest.Fill(t, mnt)
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		_, err = alice.in.Send(ctx, alice.seal(t, bob.key.Public(), fmt.Sprintf("full %d", i)))
	}
	if err == nil {
		t.Fatal("50 sends stored on a full disk")
	}
	free()
	waitReady("with room on the disk again", func(f []string) bool { return !slices.Contains(f, "store") })

	start := time.Now()
	_, err = alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "refused"))
	took := time.Since(start)
	refused(t, "send to an inbox stream that keeps its write error", err, kez.DoorStoreUnavailable)
	if !strings.Contains(err.Error(), "refuses writes to "+kez.InboxStream) || !strings.Contains(err.Error(), "restart nats-server") {
		t.Errorf("refusal %q; want it naming %s and the restart", err, kez.InboxStream)
	}
	if limit := streams.StoreWait + 3*time.Second; took > limit {
		t.Errorf("refused after %v, want within %v", took, limit)
	}
	check := "stream:" + kez.InboxStream
	r := waitReady("with the inbox stream refusing writes", func(f []string) bool { return slices.Contains(f, check) })
	if msg := r.Checks[check]; !strings.Contains(msg, "the broker refuses writes to "+kez.InboxStream+" since ") ||
		!strings.Contains(msg, "restart nats-server on ") {
		t.Errorf("readiness %s = %q; want it saying since when and to restart nats-server", check, msg)
	}

	st.NATS.Restart()
	waitReady("after nats-server restarted", func(f []string) bool { return len(f) == 0 })
	if _, err := alice.in.Send(ctx, alice.seal(t, bob.key.Public(), "after")); err != nil {
		t.Fatalf("send after nats-server restarted: %v", err)
	}
	if got := bob.texts(t); !slices.Contains(got, "before") || !slices.Contains(got, "after") || slices.Contains(got, "refused") {
		t.Errorf("bob reads %q; want before and after, not the refused one", got)
	}
}
