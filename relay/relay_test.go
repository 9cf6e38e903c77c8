package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"kez.lat/kez"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
	"kez.lat/kez/relay"
	"kez.lat/kez/web/webtest"
)

func testConfig(t testing.TB, home string) relay.Config {
	cfg := relay.DefaultConfig()
	cfg.KeyFile = filepath.Join(t.TempDir(), "relay.key")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.HomeServer = home
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MaxMemory = 256 << 20
	cfg.MaxConns = 256
	return cfg
}

func startRelay(t testing.TB, cfg relay.Config) *relay.Service {
	t.Helper()
	s, err := relay.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// newHost starts a client host with key as its identity (TCP + Noise on
// 127.0.0.1, the relay transport on, as libp2p has it by default).
func newHost(t testing.TB, key *kez.PrivateKey) host.Host {
	t.Helper()
	priv, err := p2p.Identity(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// tcpAddr returns the relay's TCP address on 127.0.0.1, /p2p/<id> included.
func tcpAddr(t testing.TB, s *relay.Service) ma.Multiaddr {
	t.Helper()
	for _, a := range s.Addrs() {
		if strings.HasPrefix(a.String(), "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	t.Fatalf("relay has no 127.0.0.1 tcp address: %v", s.Addrs())
	return nil
}

func TestRelayEndToEnd(t *testing.T) {
	home := newFakeHome(t)
	aliceKey, bobKey, malloryKey := keztest.NewKey(t), keztest.NewKey(t), keztest.NewKey(t)
	home.register(aliceKey.Public())
	home.register(bobKey.Public())
	r := startRelay(t, testConfig(t, home.URL))
	for _, a := range r.Addrs() {
		if !strings.HasSuffix(a.String(), "/p2p/"+r.ID().String()) {
			t.Errorf("address %s lacks /p2p/%s", a, r.ID())
		}
	}
	relayAddr := tcpAddr(t, r)
	relayInfo, err := peer.AddrInfoFromP2pAddr(relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice, bob, mallory := newHost(t, aliceKey), newHost(t, bobKey), newHost(t, malloryKey)

	// An unregistered key gets no reservation.
	_, err = client.Reserve(ctx, mallory, *relayInfo)
	var rerr client.ReservationError
	if !errors.As(err, &rerr) || rerr.Status != pbv2.Status_PERMISSION_DENIED {
		t.Fatalf("unregistered reservation: %v, want PERMISSION_DENIED", err)
	}

	if _, err := client.Reserve(ctx, bob, *relayInfo); err != nil {
		t.Fatalf("bob's reservation: %v", err)
	}
	const size = 8 << 20 // far above libp2p's default 128 KiB per circuit
	const proto = "/kez-test/blob/1"
	got := make(chan []byte, 1)
	bob.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		b, err := io.ReadAll(s)
		if err != nil {
			t.Errorf("bob reads: %v", err)
		}
		got <- b
		s.Write([]byte("ok"))
	})

	circuit, err := ma.NewMultiaddr(relayAddr.String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	lctx := network.WithAllowLimitedConn(ctx, "test")

	// mallory may not open a circuit even to a reserved peer.
	mallory.Peerstore().AddAddrs(bob.ID(), []ma.Multiaddr{circuit}, time.Minute)
	if err := mallory.Connect(lctx, peer.AddrInfo{ID: bob.ID(), Addrs: []ma.Multiaddr{circuit}}); err == nil {
		t.Error("unregistered peer connected through the relay")
	}

	// alice knows bob only by the circuit address.
	if err := alice.Connect(lctx, peer.AddrInfo{ID: bob.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("alice connects to bob through the relay: %v", err)
	}
	conns := alice.Network().ConnsToPeer(bob.ID())
	if len(conns) != 1 || !strings.Contains(conns[0].RemoteMultiaddr().String(), "/p2p-circuit") {
		t.Fatalf("alice's connections to bob: %v, want one relayed", conns)
	}
	if !conns[0].Stat().Limited {
		t.Error("relayed connection not marked limited (the relay sets limits)")
	}
	s, err := alice.NewStream(lctx, bob.ID(), proto)
	if err != nil {
		t.Fatalf("stream over the circuit: %v", err)
	}
	data := make([]byte, size)
	rand.Read(data)
	if _, err := s.Write(data); err != nil {
		t.Fatalf("write %d bytes: %v", size, err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	ack, err := io.ReadAll(s)
	if err != nil || string(ack) != "ok" {
		t.Fatalf("ack %q, %v", ack, err)
	}
	s.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("bob got %d bytes, not the %d sent", len(b), len(data))
		}
	case <-ctx.Done():
		t.Fatal("bob got nothing")
	}

	// The relay's metrics show the reservation and the circuit.
	m := webtest.Do(t, http.MethodGet, r.HTTPURL()+"/metrics", nil)
	if m.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", m.Status)
	}
	for _, want := range []string{
		"kez_relay_circuits_opened_total 1",
		"kez_relay_reservations 1",
		`kez_relay_acl_decisions_total{op="reserve",result="allow"} 1`,
		`kez_relay_acl_decisions_total{op="reserve",result="deny"} 1`,
		`kez_relay_acl_decisions_total{op="connect",result="allow"} 1`,
		`kez_relay_acl_decisions_total{op="connect",result="deny"} 1`,
		`libp2p_relaysvc_connections_total{type="opened"}`,
		"libp2p_rcmgr_", // the host's own metrics are on the relay's registry too
	} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !bytes.Contains(m.Body, []byte("kez_relay_bytes_total")) {
		t.Error("metrics lack kez_relay_bytes_total")
	}
	h := webtest.Do(t, http.MethodGet, r.HTTPURL()+"/healthz", nil)
	if h.Status != http.StatusOK || !strings.Contains(string(h.Body), r.ID().String()) {
		t.Errorf("/healthz = %d %s", h.Status, h.Body)
	}
	webtest.BuildInfo(t, h.Body, m.Body)
}

func TestKeyFileCreatedOnceAndReused(t *testing.T) {
	home := newFakeHome(t)
	cfg := testConfig(t, home.URL)
	first, err := relay.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	id := first.ID()
	first.Close(context.Background())
	fi, err := os.Stat(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	second := startRelay(t, cfg)
	if second.ID() != id {
		t.Errorf("peer id after restart %s, want %s", second.ID(), id)
	}
	k, err := relay.LoadKey(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := p2p.PeerID(k.Public()); pid != id {
		t.Errorf("LoadKey gives %s, want %s", pid, id)
	}
}

func TestLoadKeyRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	if _, err := relay.LoadKey(open); err != nil { // created
		t.Fatal(err)
	}
	os.Chmod(open, 0o644)
	if _, err := relay.LoadKey(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	junk := filepath.Join(dir, "junk.key")
	secret := "kez-seed-v1 " + strings.Repeat("zz", 32)
	os.WriteFile(junk, []byte(secret), 0o600)
	_, err := relay.LoadKey(junk)
	if err == nil || strings.Contains(err.Error(), "zz") {
		t.Errorf("junk key: %v (must fail without echoing the content)", err)
	}
}

// TestLoadKeyAfterCrash: neither the empty relay.key an earlier release
// left when it crashed between create and write, nor a temporary file
// left by a crash of this one, blocks the next start; the key then
// written stays.
func TestLoadKeyAfterCrash(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "relay.key")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".relay.key.tmp-1"), []byte("kez-seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := relay.LoadKey(empty)
	if err != nil {
		t.Fatalf("LoadKey of an empty key file: %v", err)
	}
	again, err := relay.LoadKey(empty)
	if err != nil || !again.Public().Equal(k.Public()) {
		t.Fatalf("second LoadKey = %v, %v: want the key the first wrote", again, err)
	}
	if fi, err := os.Stat(empty); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v, want mode 0600", fi, err)
	}
}
