package streams_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// serviceJS starts the reference broker and runs setup twice (it must be
// idempotent) as the service user whose key is name.
func serviceJS(t *testing.T, name string, setup func(context.Context, jetstream.JetStream) error) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Start(t).Connect(name))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := setup(context.Background(), js); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	return js
}

func setup(t *testing.T, cfg streams.Config) (jetstream.JetStream, *streams.Registry) {
	t.Helper()
	js := serviceJS(t, natskeys.KeyChatServer, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := streams.Setup(ctx, js, cfg)
		return err
	})
	reg, err := streams.OpenRegistry(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return js, reg
}

func event(t *testing.T, handle string) kez.RegistryEvent {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return eventBy(t, k, handle, time.Now())
}

func eventBy(t *testing.T, k *kez.PrivateKey, handle string, now time.Time) kez.RegistryEvent {
	t.Helper()
	h, err := kez.ParseHandle(handle, "kez.lat")
	if err != nil {
		t.Fatal(err)
	}
	req := kez.NewRegistrationRequest(k, h, now)
	return kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h, Primary: k.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}
}

func TestRegistryStreamIsAppendOnly(t *testing.T) {
	js, _ := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.RegistryStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || !cfg.AllowAtomicPublish {
		t.Fatalf("registry config deny_delete=%v deny_purge=%v allow_atomic=%v", cfg.DenyDelete, cfg.DenyPurge, cfg.AllowAtomicPublish)
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("purge of the registry succeeded")
	}
}

func TestAppendClaimsAllOrNothing(t *testing.T) {
	js, reg := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	aliceKey, _ := kez.GenerateKey(nil)
	start := time.Now()
	alice := eventBy(t, aliceKey, "alice", start)
	stored, seq, err := reg.Append(ctx, alice)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if seq != 3 || string(stored.RegistrationSig) != string(alice.RegistrationSig) {
		t.Errorf("event seq = %d, want 3 (key claim, skeleton claim, event)", seq)
	}
	// A retry, even signed again later (after an unknown outcome), gets the
	// stored event back.
	for _, retry := range []kez.RegistryEvent{alice, eventBy(t, aliceKey, "alice", start.Add(time.Minute))} {
		held, again, err := reg.Append(ctx, retry)
		if err != nil || again != seq || string(held.RegistrationSig) != string(alice.RegistrationSig) {
			t.Errorf("retry = %d, %v; want %d with the first event", again, err, seq)
		}
	}

	other := event(t, "alice")
	if _, _, err := reg.Append(ctx, other); !errors.Is(err, kez.ErrHandleTaken) {
		t.Errorf("same handle, other key: %v, want ErrHandleTaken", err)
	}
	sameKey := event(t, "bob")
	sameKey.Primary = alice.Primary
	if _, _, err := reg.Append(ctx, sameKey); !errors.Is(err, kez.ErrKeyTaken) {
		t.Errorf("same key: %v, want ErrKeyTaken", err)
	}
	lookalike := event(t, "a1ice")
	if _, _, err := reg.Append(ctx, lookalike); !errors.Is(err, kez.ErrHandleTooSimilar) {
		t.Errorf("look-alike: %v, want ErrHandleTooSimilar", err)
	}
	// Nothing of the refused batches was stored.
	s, _ := js.Stream(ctx, streams.RegistryStream)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("registry holds %d messages, want 3", info.State.Msgs)
	}
}

func TestRateLimiterHoldsAcrossClients(t *testing.T) {
	cfg := streams.DefaultConfig()
	cfg.RegisterLimit = 3
	js, _ := setup(t, cfg)
	ctx := context.Background()
	// Two limiters stand for two replicas.
	a, b := streams.NewRateLimiter(js, cfg, streams.RateLimitRegister), streams.NewRateLimiter(js, cfg, streams.RateLimitRegister)
	ip := netip.MustParseAddr("192.0.2.7")
	for i, l := range []*streams.RateLimiter{a, b, a} {
		if err := l.Allow(ctx, ip); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := b.Allow(ctx, ip); !errors.Is(err, kez.ErrRateLimited) {
		t.Fatalf("4th request: %v, want ErrRateLimited", err)
	}
	if err := b.Allow(ctx, netip.MustParseAddr("192.0.2.8")); err != nil {
		t.Fatalf("other client: %v", err)
	}
	// IPv6 is limited per /64.
	v6 := []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"}
	for _, s := range v6 {
		if err := a.Allow(ctx, netip.MustParseAddr(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Allow(ctx, netip.MustParseAddr("2001:db8::ffff")); !errors.Is(err, kez.ErrRateLimited) {
		t.Fatalf("same /64: %v, want ErrRateLimited", err)
	}
}

// TestRateLimiterPerIPv6Net: the holder of an IPv6 /48 (65,536 /64s)
// gets the registration limit once for the /48, not once per /64: each
// /64 far below its own limit, the /48 is refused as a whole past its
// budget (ErrNetRateLimited), across replicas; another /48 is not, nor
// is a /24 of IPv4 addresses (no wider IPv4 tier); and requests a /64's
// own limit refused do not count against its /48.
func TestRateLimiterPerIPv6Net(t *testing.T) {
	cfg := streams.DefaultConfig()
	cfg.RegisterLimit, cfg.RegisterNetLimit = 2, 5
	js, _ := setup(t, cfg)
	ctx := context.Background()
	// Two limiters stand for two replicas.
	a, b := streams.NewRateLimiter(js, cfg, streams.RateLimitRegister), streams.NewRateLimiter(js, cfg, streams.RateLimitRegister)
	limiters := []*streams.RateLimiter{a, b}
	addr := func(s string) netip.Addr { return netip.MustParseAddr(s) }

	// One request from each of 5 /64s of 2001:db8:1::/48, then a 6th /64.
	for i := range 5 {
		if err := limiters[i%2].Allow(ctx, addr(fmt.Sprintf("2001:db8:1:%x::1", i))); err != nil {
			t.Fatalf("request from /64 #%d of the /48: %v", i, err)
		}
	}
	err := b.Allow(ctx, addr("2001:db8:1:ffff::1"))
	if !errors.Is(err, kez.ErrNetRateLimited) {
		t.Fatalf("first request of a new /64 of a /48 that made 5: %v, want ErrNetRateLimited", err)
	}
	if !errors.Is(err, kez.ErrRateLimited) || !strings.Contains(err.Error(), "/48") {
		t.Errorf("the /48 refusal %q is not a rate_limited naming the /48", err)
	}
	if err := a.Allow(ctx, addr("2001:db8:2::1")); err != nil {
		t.Fatalf("another /48: %v", err)
	}

	// A /64 over its own limit: refused per address, and those refusals
	// leave its /48 room for 3 more /64s.
	for range 2 {
		if err := a.Allow(ctx, addr("2001:db8:3::1")); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := b.Allow(ctx, addr("2001:db8:3::2")); !errors.Is(err, kez.ErrRateLimited) || errors.Is(err, kez.ErrNetRateLimited) {
			t.Fatalf("3rd request of a /64: %v, want ErrRateLimited for the address", err)
		}
	}
	for i := 1; i <= 3; i++ {
		if err := limiters[i%2].Allow(ctx, addr(fmt.Sprintf("2001:db8:3:%x::1", i))); err != nil {
			t.Fatalf("request from /64 #%d of a /48 that made 2: %v", i, err)
		}
	}
	if err := a.Allow(ctx, addr("2001:db8:3:ffff::1")); !errors.Is(err, kez.ErrNetRateLimited) {
		t.Fatalf("6th request counted from a /48: %v, want ErrNetRateLimited", err)
	}

	// IPv4 is limited per address only: 10 addresses of one /24, each to
	// its limit, are all allowed.
	for i := range 10 {
		ip := addr(fmt.Sprintf("192.0.2.%d", i+1))
		for range 2 {
			if err := limiters[i%2].Allow(ctx, ip); err != nil {
				t.Fatalf("%s: %v", ip, err)
			}
		}
	}
}

// TestRateLimiterNetLimitDefault: the /48 limit is ten times the limit
// per address unless set, and never below it.
func TestRateLimiterNetLimitDefault(t *testing.T) {
	cfg := streams.DefaultConfig()
	if got := cfg.NetLimit(); got != 10*cfg.RegisterLimit {
		t.Errorf("default limit per /48 = %d, want %d", got, 10*cfg.RegisterLimit)
	}
	cfg.RegisterNetLimit = cfg.RegisterLimit - 1
	if err := cfg.Validate(); !errors.Is(err, streams.ErrConfig) {
		t.Errorf("a /48 limit below the address limit: Validate = %v, want ErrConfig", err)
	}
	cfg.RegisterLimit, cfg.RegisterNetLimit = 2, 0
	js, _ := setup(t, cfg)
	s, err := js.Stream(context.Background(), streams.NetRateLimitStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxMsgsPerSubject; got != 20 {
		t.Errorf("stream %s limit %d, want 20 (10 x 2)", streams.NetRateLimitStream, got)
	}
}

// TestInboxShareIsPerSender: each sender has its own share of an inbox
// (its own subject's limit), so one sender's full share refuses only that
// sender, and reading (a purge up to a sequence) makes room again.
func TestInboxShareIsPerSender(t *testing.T) {
	cfg := streams.DefaultConfig()
	cfg.InboxMaxMsgs = 3
	js, _ := setup(t, cfg)
	ctx := context.Background()
	bob, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	alice, _ := kez.GenerateKey(nil)
	flood := kez.InboxMsgSubject(bob.Public(), mallory.Public())
	var last uint64
	for i := range 3 {
		ack, err := js.Publish(ctx, flood, []byte{byte(i)})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		last = ack.Sequence
	}
	if _, err := js.Publish(ctx, flood, []byte("overflow")); err == nil || !strings.Contains(err.Error(), "maximum messages per subject exceeded") {
		t.Fatalf("a 4th unread message of one sender: %v", err)
	}
	if _, err := js.Publish(ctx, kez.InboxMsgSubject(bob.Public(), alice.Public()), []byte("hello")); err != nil {
		t.Fatalf("another sender refused while the first one's share is full: %v", err)
	}
	st, err := js.Stream(ctx, kez.InboxStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(flood), jetstream.WithPurgeSequence(last+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, flood, []byte("after reading")); err != nil {
		t.Fatalf("after reading: %v", err)
	}
}

// TestFollowCountsEventsReadAhead: events appended while the caller is
// busy with one are delivered as the last of the stream at the time
// (the server's pending 0); Follow counts those it has already received
// behind an entry, so the projector applies them as one batch rather
// than one at a time.
func TestFollowCountsEventsReadAhead(t *testing.T) {
	_, reg := setup(t, streams.DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, _, err := reg.Append(ctx, event(t, "first")); err != nil {
		t.Fatal(err)
	}
	const more = 5
	var pending []uint64
	err := reg.Follow(ctx, 0, func(e kez.RegistryEntry) error {
		pending = append(pending, e.Pending)
		if len(pending) == 1 {
			for i := range more {
				if _, _, err := reg.Append(ctx, event(t, "later"+strconv.Itoa(i))); err != nil {
					return err
				}
			}
			time.Sleep(300 * time.Millisecond) // they arrive while we are busy
		}
		if len(pending) == 1+more {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if pending[0] != 0 {
		t.Errorf("first entry pending %d, want 0", pending[0])
	}
	for i, p := range pending[1:] {
		if want := uint64(more - 1 - i); p != want {
			t.Errorf("entries' pending %v, want %d behind entry %d", pending, want, i+2)
			break
		}
	}
}

var errStop = errors.New("stop")

// TestSetCheckpointAcrossReplicas: two replicas move the checkpoint in
// turns, each with a stale idea of the other's last write; neither
// lowers it, and another tree at the same sequence is damage.
func TestSetCheckpointAcrossReplicas(t *testing.T) {
	js, _ := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	a, err := streams.OpenProjection(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := streams.OpenProjection(ctx, js)
	var tree integrity.Tree
	cps := map[uint64]integrity.Checkpoint{}
	for seq := uint64(1); seq <= 12; seq++ {
		leaf := integrity.LeafHash([]byte{byte(seq)})
		tree.Append(leaf)
		cps[seq] = integrity.Checkpoint{Seq: seq, Tree: tree.Clone(), LastLeaf: leaf}
	}
	for i, step := range []struct {
		p   *streams.Projection
		seq uint64
	}{{a, 3}, {b, 6}, {a, 9}, {b, 12}, {a, 10}} {
		start := time.Now()
		if err := step.p.SetCheckpoint(ctx, cps[step.seq]); err != nil {
			t.Fatalf("step %d: SetCheckpoint(%d): %v", i, step.seq, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("step %d took %v", i, d)
		}
		want := min(max(step.seq, 3*uint64(i+1)), 12)
		for _, p := range []*streams.Projection{a, b} {
			if got, err := p.Checkpoint(ctx); err != nil || got.Seq != want {
				t.Fatalf("step %d: checkpoint %d, %v; want %d", i, got.Seq, err, want)
			}
		}
	}
	var other integrity.Tree
	for seq := range 12 {
		other.Append(integrity.LeafHash([]byte{byte(seq + 100)}))
	}
	if err := a.SetCheckpoint(ctx, integrity.Checkpoint{Seq: 12, Tree: other, LastLeaf: integrity.LeafHash([]byte{111})}); !errors.Is(err, kez.ErrLogDamaged) {
		t.Errorf("another tree at the same sequence: %v, want ErrLogDamaged", err)
	}
}

// TestClaimSkeleton: replicas claiming one skeleton at once store one
// claim and all learn its holder; a skeleton a registration claimed is
// not claimed again; LastSeq stays the last event's sequence with claims
// after it.
func TestClaimSkeleton(t *testing.T) {
	_, reg := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	_, seq, err := reg.Append(ctx, event(t, "avw"))
	if err != nil {
		t.Fatal(err)
	}
	avvv := event(t, "avvv").Handle
	if h, stored, err := reg.ClaimSkeleton(ctx, avvv); err != nil || stored || h.Local() != "avw" {
		t.Errorf("ClaimSkeleton(avvv) after avw's registration = %v, %v, %v; want avw, false", h, stored, err)
	}

	handles := []kez.Handle{event(t, "bvvv").Handle, event(t, "bwv").Handle, event(t, "bvw").Handle}
	type result struct {
		h      kez.Handle
		stored bool
		err    error
	}
	results := make([]result, 12)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			h, stored, err := reg.ClaimSkeleton(ctx, handles[i%len(handles)])
			results[i] = result{h, stored, err}
		})
	}
	wg.Wait()
	stored := 0
	for i, r := range results {
		if r.err != nil || r.h != results[0].h {
			t.Errorf("claim %d = %v, %v; want %v", i, r.h, r.err, results[0].h)
		}
		if r.stored {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d claims stored, want 1", stored)
	}
	if got, err := reg.SkeletonHandle(ctx, "bvvv"); err != nil || got != results[0].h {
		t.Errorf("SkeletonHandle(bvvv) = %v, %v; want %v", got, err, results[0].h)
	}
	if last, err := reg.LastSeq(ctx); err != nil || last != seq {
		t.Errorf("LastSeq with claims after the last event = %d, %v; want %d", last, err, seq)
	}
}

// TestLastSeqReadsTheEventBehindAClaimOnce: while the stream ends with a
// claim, LastSeq reads the last event by subject (a match of every
// handle's subject on the server) once, not at every call; a new claim
// is read once more, and an event last is read by nobody.
func TestLastSeqReadsTheEventBehindAClaimOnce(t *testing.T) {
	_, reg := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	var seq uint64
	for i := range 5 {
		var err error
		if _, seq, err = reg.Append(ctx, event(t, "user"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	lastSeq := func(want, lookups uint64) {
		t.Helper()
		if last, err := reg.LastSeq(ctx); err != nil || last != want {
			t.Fatalf("LastSeq = %d, %v; want %d", last, err, want)
		}
		if n := streams.LastEventLookups(reg); n != lookups {
			t.Fatalf("%d reads of the last event, want %d", n, lookups)
		}
	}
	lastSeq(seq, 0)
	if _, stored, err := reg.ClaimSkeleton(ctx, event(t, "avw").Handle); err != nil || !stored {
		t.Fatalf("ClaimSkeleton(avw) = %v, %v", stored, err)
	}
	for range 20 {
		lastSeq(seq, 1)
	}
	if _, stored, err := reg.ClaimSkeleton(ctx, event(t, "bvw").Handle); err != nil || !stored {
		t.Fatalf("ClaimSkeleton(bvw) = %v, %v", stored, err)
	}
	lastSeq(seq, 2)
	lastSeq(seq, 2)
	_, seq, err := reg.Append(ctx, event(t, "carol"))
	if err != nil {
		t.Fatal(err)
	}
	lastSeq(seq, 2)
}
