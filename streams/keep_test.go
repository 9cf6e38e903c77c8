package streams_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/natstest"
	"kez.lat/kez/streams"
)

// TestRateLimiterRecreatesItsStream: the rate-limit stream is memory
// storage, gone with a broker restart; a limiter that finds it missing
// creates it again and the request goes through (it used to answer 503
// until the replica restarted), and the limit still holds.
func TestRateLimiterRecreatesItsStream(t *testing.T) {
	cfg := streams.DefaultConfig()
	cfg.RegisterLimit = 2
	ns := natstest.Start(t)
	nc := ns.Connect(callout.KeyChatServer, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := streams.Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	l := streams.NewRateLimiter(js, cfg, streams.RateLimitRegister)
	ip := netip.MustParseAddr("192.0.2.1")
	if err := l.Allow(ctx, ip); err != nil {
		t.Fatal(err)
	}

	ns.Restart()
	waitConnected(t, nc)
	if _, err := js.Stream(ctx, streams.RateLimitStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after a broker restart the memory stream is still there (%v): the test proves nothing", err)
	}
	if err := l.Allow(ctx, ip); err != nil {
		t.Fatalf("first request after the broker restart: %v", err)
	}
	if l.Recreated() != 1 {
		t.Errorf("recreated the stream %d times, want 1", l.Recreated())
	}
	if err := l.Allow(ctx, ip); err != nil {
		t.Fatalf("second request: %v", err)
	}
	if err := l.Allow(ctx, ip); !errors.Is(err, kez.ErrRateLimited) {
		t.Fatalf("third request in the window: %v, want ErrRateLimited", err)
	}
	info, err := js.Stream(ctx, streams.RateLimitStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxMsgsPerSubject; got != 2 {
		t.Errorf("recreated stream limit %d, want the configured 2", got)
	}
}

// TestKeeperAfterReconnect: after the broker restarts, the keeper runs the
// setup again on its own: the memory streams are back before any request
// needs them, and a Kick runs it again when something is found missing.
func TestKeeperAfterReconnect(t *testing.T) {
	cfg := streams.DefaultConfig()
	ns := natstest.Start(t)
	nc := ns.Connect(callout.KeyChatServer, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	setup := func(ctx context.Context) error { return streams.Setup(ctx, js, cfg) }
	if err := setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	k := streams.NewKeeper(nc, "test setup", setup, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(50 * time.Millisecond) // Run listens for reconnects

	ns.Restart()
	waitRan(t, k)
	if _, err := js.Stream(context.Background(), streams.RateLimitStream); err != nil {
		t.Fatalf("after the reconnect: %v", err)
	}

	if err := js.DeleteKeyValue(context.Background(), streams.QuotaBucket); err != nil {
		t.Fatal(err)
	}
	k.Kick()
	waitRan(t, k)
	if _, err := js.KeyValue(context.Background(), streams.QuotaBucket); err != nil {
		t.Fatalf("after a kick: %v", err)
	}
}

func waitRan(t *testing.T, k *streams.Keeper) {
	t.Helper()
	select {
	case <-k.Ran():
	case <-time.After(20 * time.Second):
		t.Fatal("the keeper did not run the setup within 20s")
	}
}

func waitConnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	for start := time.Now(); !nc.IsConnected(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("not reconnected within 10s")
		}
	}
}

func TestIsMissing(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{jetstream.ErrNoStreamResponse, true},
		{jetstream.ErrStreamNotFound, true},
		{jetstream.ErrBucketNotFound, true},
		{jetstream.ErrKeyNotFound, false},
		{context.DeadlineExceeded, false},
	} {
		if got := streams.IsMissing(tt.err); got != tt.want {
			t.Errorf("IsMissing(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
