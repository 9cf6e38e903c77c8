package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
)

func setupSigchains(t *testing.T, cfg streams.SigchainConfig) (jetstream.JetStream, *streams.Sigchains) {
	t.Helper()
	js := serviceJS(t, natskeys.KeySigServer, func(ctx context.Context, js jetstream.JetStream) error {
		return streams.SetupSigchains(ctx, js, cfg)
	})
	store, err := streams.OpenSigchains(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return js, store
}

// chain signs n events of a fresh key.
func chain(t *testing.T, n int) (*kez.PrivateKey, []sigchain.Event) {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, extend(t, k, nil, n)
}

func extend(t *testing.T, k *kez.PrivateKey, events []sigchain.Event, n int) []sigchain.Event {
	t.Helper()
	for i := range n {
		var prev *sigchain.Event
		if len(events) > 0 {
			prev = &events[len(events)-1]
		}
		e, err := sigchain.Next(k, prev, sigchain.TypeAddClaim,
			sigchain.Claim{Kind: "dns", Value: fmt.Sprintf("host%d.example", len(events)+i), Proof: "TXT"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}

func wire(t *testing.T, e sigchain.Event) string {
	t.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSigchainStreamIsAppendOnly(t *testing.T) {
	js, store := setupSigchains(t, streams.DefaultSigchainConfig())
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.SigchainStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowDirect || cfg.AllowRollup || cfg.Storage != jetstream.FileStorage ||
		cfg.Discard != jetstream.DiscardNew || cfg.MaxMsgsPerSubject > 0 || cfg.MaxMsgSize < sigchain.MaxEventSize {
		t.Fatalf("sigchain stream config = %+v", cfg)
	}
	k, events := chain(t, 1)
	if _, err := store.Append(ctx, events[0], 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("purge of the sigchain stream succeeded")
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("delete of a sigchain event succeeded")
	}
	if got, _, err := store.Read(ctx, k.Public(), 0, 0); err != nil || len(got) != 1 {
		t.Fatalf("after refused removals: %d events, %v", len(got), err)
	}
}

func TestSigchainAppendTailRead(t *testing.T) {
	_, store := setupSigchains(t, streams.DefaultSigchainConfig())
	ctx := context.Background()
	k, events := chain(t, 5)
	other, otherEvents := chain(t, 2)

	tail, seq, err := store.Tail(ctx, k.Public())
	if err != nil || !tail.IsZero() || seq != 0 {
		t.Fatalf("Tail of an empty chain = %v, %d, %v", tail.Seqno(), seq, err)
	}
	if got, _, err := store.Read(ctx, k.Public(), 0, 0); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Read of an empty chain = %v, %v; want an empty, non-nil slice", got, err)
	}

	// Interleave two chains, so that their stream sequences are not
	// their seqnos.
	var expect, otherExpect uint64
	for i, e := range events {
		if expect, err = store.Append(ctx, e, expect); err != nil {
			t.Fatalf("Append %d: %v", i+1, err)
		}
		if i < len(otherEvents) {
			if otherExpect, err = store.Append(ctx, otherEvents[i], otherExpect); err != nil {
				t.Fatal(err)
			}
		}
	}
	tail, seq, err = store.Tail(ctx, k.Public())
	if err != nil || tail.Hash() != events[4].Hash() || seq != expect {
		t.Fatalf("Tail = seqno %d at %d, %v; want seqno 5 at %d", tail.Seqno(), seq, err, expect)
	}

	for _, tt := range []struct{ since, first, n uint64 }{
		{0, 1, 5}, {1, 1, 5}, {2, 2, 4}, {4, 4, 2}, {5, 5, 1}, {6, 0, 0}, {1 << 60, 0, 0},
	} {
		got, _, err := store.Read(ctx, k.Public(), tt.since, 0)
		if err != nil {
			t.Fatalf("Read(since %d): %v", tt.since, err)
		}
		if uint64(len(got)) != tt.n {
			t.Fatalf("Read(since %d) = %d events, want %d", tt.since, len(got), tt.n)
		}
		for i, raw := range got {
			if want := wire(t, events[tt.first-1+uint64(i)]); string(raw) != want {
				t.Errorf("Read(since %d)[%d] = %s, want %s", tt.since, i, raw, want)
			}
		}
	}
	got, _, err := store.Read(ctx, other.Public(), 0, 0)
	if err != nil || len(got) != 2 || string(got[1]) != wire(t, otherEvents[1]) {
		t.Fatalf("other chain = %d events, %v", len(got), err)
	}

	// A stale tail loses; a retry of the stored tail is answered with its
	// sequence; nothing is stored twice.
	fork := extend(t, k, slices.Clip(events[:4]), 1)[4]
	if _, err := store.Append(ctx, fork, expect-1); !errors.Is(err, streams.ErrSigchainConflict) {
		t.Fatalf("Append on a stale tail: %v, want ErrSigchainConflict", err)
	}
	if again, err := store.Append(ctx, events[4], expect-1); err != nil || again != expect {
		t.Fatalf("retry of the tail = %d, %v; want %d, nil", again, err, expect)
	}
	if got, _, _ := store.Read(ctx, k.Public(), 0, 0); len(got) != 5 {
		t.Fatalf("chain holds %d events after a conflict and a retry, want 5", len(got))
	}
	var parsed []sigchain.Event
	all, _, _ := store.Read(ctx, k.Public(), 0, 0)
	b, _ := json.Marshal(all)
	if err := json.Unmarshal(b, &parsed); err != nil {
		t.Fatal(err)
	}
	if _, err := sigchain.VerifyChain(k.Public(), parsed); err != nil {
		t.Fatalf("stored chain does not verify: %v", err)
	}
}

func TestSigchainLimiterHoldsAcrossReplicas(t *testing.T) {
	cfg := streams.DefaultSigchainConfig()
	cfg.AppendLimit = 2
	js, _ := setupSigchains(t, cfg)
	// The home server's streams live beside the sig-server's: no subject
	// overlaps, and the two limits are independent.
	if _, err := streams.Setup(context.Background(), js, streams.DefaultConfig()); err != nil {
		t.Fatalf("Setup beside SetupSigchains: %v", err)
	}
	ctx := context.Background()
	a, b := streams.NewSigchainLimiter(js, cfg), streams.NewSigchainLimiter(js, cfg)
	k1, _ := chain(t, 0)
	k2, _ := chain(t, 0)
	if err := a.Allow(ctx, k1.Public()); err != nil {
		t.Fatal(err)
	}
	if err := b.Allow(ctx, k1.Public()); err != nil {
		t.Fatal(err)
	}
	if err := a.Allow(ctx, k1.Public()); !errors.Is(err, kez.ErrRateLimited) {
		t.Fatalf("3rd append: %v, want ErrRateLimited", err)
	}
	if err := b.Allow(ctx, k2.Public()); err != nil {
		t.Fatalf("other chain: %v", err)
	}
}

func TestSigchainConfigValidate(t *testing.T) {
	good := streams.DefaultSigchainConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*streams.SigchainConfig){
		func(c *streams.SigchainConfig) { c.Replicas = 0 },
		func(c *streams.SigchainConfig) { c.Replicas = 6 },
		func(c *streams.SigchainConfig) { c.AppendLimit = 0 },
		func(c *streams.SigchainConfig) { c.AppendWindow = time.Millisecond },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); !errors.Is(err, streams.ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

// A chain longer than a few dozen events is read through a consumer, in
// batches, which is deleted after the read.
func TestSigchainReadLongChain(t *testing.T) {
	js, store := setupSigchains(t, streams.DefaultSigchainConfig())
	ctx := context.Background()
	k, events := chain(t, 300)
	_, others := chain(t, 3)
	var expect, otherExpect uint64
	var err error
	for i, e := range events {
		// Another chain's events before the first (which is then not
		// at stream sequence 1) and in between.
		if i%100 == 0 {
			if otherExpect, err = store.Append(ctx, others[i/100], otherExpect); err != nil {
				t.Fatal(err)
			}
		}
		if expect, err = store.Append(ctx, e, expect); err != nil {
			t.Fatalf("Append %d: %v", i+1, err)
		}
	}
	for _, since := range []uint64{0, 2, 33, 195, 257, 270, 290, 299, 300, 301} {
		got, _, err := store.Read(ctx, k.Public(), since, 0)
		if err != nil {
			t.Fatalf("Read(since %d): %v", since, err)
		}
		first := max(since, 1)
		if want := max(301-int(first), 0); len(got) != want {
			t.Fatalf("Read(since %d) = %d events, want %d", since, len(got), want)
		}
		for i, raw := range got {
			if want := wire(t, events[int(first)-1+i]); string(raw) != want {
				t.Fatalf("Read(since %d)[%d] = %s, want %s", since, i, raw, want)
			}
		}
	}
	// Pages: any since and limit give the same events as one read, and
	// "more" exactly when the page stops before the tail.
	for _, p := range []struct{ since, limit uint64 }{{0, 1}, {1, 7}, {5, 100}, {33, 256}, {250, 40}, {290, 11}, {299, 2}} {
		var got []string
		since, pages := max(p.since, 1), 0
		for {
			page, more, err := store.Read(ctx, k.Public(), since, p.limit)
			if err != nil {
				t.Fatalf("Read(since %d, limit %d): %v", since, p.limit, err)
			}
			if uint64(len(page)) > p.limit || (more && uint64(len(page)) != p.limit) {
				t.Fatalf("Read(since %d, limit %d) = %d events, more %v", since, p.limit, len(page), more)
			}
			for _, raw := range page {
				got = append(got, string(raw))
			}
			since += uint64(len(page))
			if pages++; !more {
				break
			}
		}
		if want := 301 - int(max(p.since, 1)); len(got) != want {
			t.Fatalf("pages of %d from %d: %d events, want %d", p.limit, p.since, len(got), want)
		}
		for i, raw := range got {
			if want := wire(t, events[int(max(p.since, 1))-1+i]); raw != want {
				t.Fatalf("pages of %d from %d: event %d differs", p.limit, p.since, i)
			}
		}
	}
	s, err := js.Stream(ctx, streams.SigchainStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Consumers != 0 {
		t.Fatalf("%d consumers left after the reads (%v)", info.State.Consumers, err)
	}
}
