package relay_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez/keztest"
	"kez.lat/kez/relay"
	"kez.lat/kez/web/webtest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newACL(t *testing.T, home string, adjust func(*relay.Config)) (*relay.ACL, *prometheus.Registry, *fakeClock) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.HomeServer = home
	cfg.ACLTimeout = 500 * time.Millisecond
	if adjust != nil {
		adjust(&cfg)
	}
	reg := prometheus.NewRegistry()
	a := relay.NewACL(cfg, reg, webtest.Logger(t))
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a.Now = clock.Now
	return a, reg, clock
}

func TestACLAllowsRegisteredDeniesUnknown(t *testing.T) {
	home := newFakeHome(t)
	alice, mallory := keztest.NewKey(t), keztest.NewKey(t)
	home.register(alice.Public())
	a, reg, _ := newACL(t, home.URL, nil)

	if !a.AllowReserve(peerID(t, alice), nil) {
		t.Error("registered key: reservation denied")
	}
	if a.AllowReserve(peerID(t, mallory), nil) {
		t.Error("unknown key: reservation allowed")
	}
	if !a.AllowConnect(peerID(t, alice), nil, peerID(t, alice)) {
		t.Error("registered to registered: circuit denied")
	}
	if a.AllowConnect(peerID(t, mallory), nil, peerID(t, alice)) {
		t.Error("unknown to registered: circuit allowed")
	}
	if a.AllowConnect(peerID(t, alice), nil, peerID(t, mallory)) {
		t.Error("registered to unknown: circuit allowed")
	}

	// A peer whose ID is not an ed25519 key cannot be a kez user; the home
	// server is not asked.
	before := home.requests.Load()
	sk, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := peer.IDFromPrivateKey(sk)
	if a.AllowReserve(other, nil) {
		t.Error("secp256k1 peer allowed")
	}
	if home.requests.Load() != before {
		t.Error("secp256k1 peer was looked up")
	}

	for series, want := range map[string]float64{
		`kez_relay_acl_decisions_total{op="reserve",result="allow"}`: 1,
		`kez_relay_acl_decisions_total{op="reserve",result="deny"}`:  2,
		`kez_relay_acl_decisions_total{op="connect",result="allow"}`: 1,
		`kez_relay_acl_decisions_total{op="connect",result="deny"}`:  2,
		`kez_relay_acl_lookups_total{result="registered"}`:           1,
		`kez_relay_acl_lookups_total{result="unknown"}`:              1,
	} {
		if got := metric(t, reg, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

func TestACLCache(t *testing.T) {
	home := newFakeHome(t)
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	home.register(alice.Public())
	a, _, clock := newACL(t, home.URL, nil)
	ctx := context.Background()
	ask := func(k peer.ID, want bool, wantRequests int64) {
		t.Helper()
		if got := a.Allowed(ctx, k); got != want {
			t.Errorf("Allowed = %v, want %v", got, want)
		}
		if got := home.requests.Load(); got != wantRequests {
			t.Errorf("home server asked %d times, want %d", got, wantRequests)
		}
	}
	aliceID, bobID := peerID(t, alice), peerID(t, bob)

	ask(aliceID, true, 1)
	clock.Add(9 * time.Minute)
	ask(aliceID, true, 1) // positive answer cached for 10 minutes
	clock.Add(2 * time.Minute)
	ask(aliceID, true, 2) // expired: asked again

	ask(bobID, false, 3)
	home.register(bob.Public()) // bob registers now
	clock.Add(20 * time.Second)
	ask(bobID, false, 3) // negative answer cached for 30 seconds
	clock.Add(11 * time.Second)
	ask(bobID, true, 4)
}

func TestACLCacheBounded(t *testing.T) {
	home := newFakeHome(t)
	a, reg, _ := newACL(t, home.URL, func(c *relay.Config) { c.ACLCacheSize = 3 })
	for range 10 {
		k := keztest.NewKey(t)
		home.register(k.Public())
		if !a.Allowed(context.Background(), peerID(t, k)) {
			t.Fatal("registered key denied")
		}
	}
	if got := metric(t, reg, "kez_relay_acl_cache_entries"); got != 3 {
		t.Errorf("cache holds %v keys, want 3", got)
	}
}

func TestACLHomeServerDownDenies(t *testing.T) {
	home := newFakeHome(t)
	alice := keztest.NewKey(t)
	home.register(alice.Public())
	a, reg, _ := newACL(t, home.URL, nil)
	ctx := context.Background()

	// A 5xx answer denies and is not cached.
	home.setStatus(http.StatusServiceUnavailable)
	if a.Allowed(ctx, peerID(t, alice)) {
		t.Error("allowed while the home server answers 503")
	}
	home.setStatus(0)
	if !a.Allowed(ctx, peerID(t, alice)) {
		t.Error("denied after the home server recovered")
	}

	// Unreachable: refused connections deny.
	bob := keztest.NewKey(t)
	home.register(bob.Public())
	home.Close()
	start := time.Now()
	if a.Allowed(ctx, peerID(t, bob)) {
		t.Error("allowed with the home server down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("look-up took %v, want it bounded by the ACL timeout", d)
	}
	if got := metric(t, reg, `kez_relay_acl_lookups_total{result="error"}`); got != 2 {
		t.Errorf("error look-ups = %v, want 2", got)
	}
}

func TestACLLookupTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := newFakeHome(t)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	a, _, _ := newACL(t, srv.URL, func(c *relay.Config) { c.ACLTimeout = 200 * time.Millisecond })
	start := time.Now()
	if a.Allowed(context.Background(), peerID(t, keztest.NewKey(t))) {
		t.Error("allowed without an answer")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("look-up took %v with a 200ms timeout", d)
	}
}

func TestACLConcurrentChecksShareOneLookup(t *testing.T) {
	home := newFakeHome(t)
	alice := keztest.NewKey(t)
	home.register(alice.Public())
	home.mu.Lock()
	home.delay = 200 * time.Millisecond // the checks overlap
	home.mu.Unlock()
	a, _, _ := newACL(t, home.URL, nil)
	id := peerID(t, alice)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if !a.Allowed(context.Background(), id) {
				t.Error("denied")
			}
		})
	}
	wg.Wait()
	if n := home.requests.Load(); n != 1 {
		t.Errorf("home server asked %d times, want 1", n)
	}
	if !a.Allowed(context.Background(), id) || home.requests.Load() != 1 {
		t.Error("cached answer not used")
	}
}
