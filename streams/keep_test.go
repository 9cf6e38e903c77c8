package streams_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
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
	nc := ns.Connect(natskeys.KeyChatServer, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := streams.Setup(ctx, js, cfg); err != nil {
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
	// The /48 tier's stream went with the restart too: the first IPv6
	// request creates it again.
	if err := l.Allow(ctx, netip.MustParseAddr("2001:db8::1")); err != nil {
		t.Fatalf("first IPv6 request after the broker restart: %v", err)
	}
	if l.Recreated() != 2 {
		t.Errorf("recreated the streams %d times, want 2 (the /48 tier's too)", l.Recreated())
	}
	if info, err = js.Stream(ctx, streams.NetRateLimitStream); err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxMsgsPerSubject; got != 20 {
		t.Errorf("recreated /48 stream limit %d, want 20 (10 x 2)", got)
	}
}

// TestKeeperAfterReconnect: after the broker restarts, the keeper runs the
// setup again on its own: the memory streams are back before any request
// needs them, and a Kick runs it again when something is found missing.
func TestKeeperAfterReconnect(t *testing.T) {
	cfg := streams.DefaultConfig()
	ns := natstest.Start(t)
	nc := ns.Connect(natskeys.KeyChatServer, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	setup := func(ctx context.Context) error { _, err := streams.Setup(ctx, js, cfg); return err }
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

// TestSetupStoreTooSmall: an inbox larger than the JetStream store fails
// at start with both sizes, not with nats-server's bare "insufficient
// storage resources available".
func TestSetupStoreTooSmall(t *testing.T) {
	const store = 64 << 20
	ns := natstest.StartWith(t, func(o *server.Options) { o.JetStreamMaxStore = store })
	js, err := jetstream.New(ns.Connect(natskeys.KeyChatServer))
	if err != nil {
		t.Fatal(err)
	}
	cfg := streams.DefaultConfig()
	cfg.InboxMaxBytes = 1 << 30
	_, err = streams.Setup(context.Background(), js, cfg)
	var tooSmall *streams.StoreTooSmallError
	if !errors.As(err, &tooSmall) || !errors.Is(err, streams.ErrStoreTooSmall) {
		t.Fatalf("Setup with a 1 GiB inbox on a 64 MiB store: %v", err)
	}
	if tooSmall.Want != cfg.InboxMaxBytes || tooSmall.Free > store || tooSmall.Free < store-(4<<20) {
		t.Errorf("sizes %+v, want 1 GiB and about 64 MiB", tooSmall)
	}
	for _, want := range []string{"1.0 GiB", "MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
	// The probe leaves nothing behind, and a fitting size starts.
	if _, err := js.Stream(context.Background(), "KEZ_STORE_PROBE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("probe stream left behind: %v", err)
	}
	cfg.InboxMaxBytes = tooSmall.Free - 1<<20 // room for the sig-server's streams
	if _, err := streams.Setup(context.Background(), js, cfg); err != nil {
		t.Fatalf("Setup with the size the error named: %v", err)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{
		512:      "512 bytes",
		1 << 20:  "1.0 MiB (1048576 bytes)",
		10 << 30: "10.0 GiB (10737418240 bytes)",
	} {
		if got := streams.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
