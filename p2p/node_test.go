package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
)

const loopTCP = "/ip4/127.0.0.1/tcp/0"

func newStore(t testing.TB) *blob.Store {
	t.Helper()
	s, err := blob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newNode(t testing.TB, cfg p2p.Config) *p2p.Node {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = keztest.NewKey(t)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{loopTCP}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := p2p.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// importRandom puts size random bytes into s as a blob.
func importRandom(t testing.TB, s *blob.Store, size int64, seed uint64) (blob.Hash, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	h, err := s.Import(bytes.NewReader(data), size)
	if err != nil {
		t.Fatal(err)
	}
	return h, data
}

func readBlob(t testing.TB, s *blob.Store, h blob.Hash) []byte {
	t.Helper()
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sharer is a node sharing blobs with chosen keys.
type sharer struct {
	mu     sync.Mutex
	shared map[blob.Hash][]kez.PublicKey
}

func (s *sharer) share(h blob.Hash, k kez.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared == nil {
		s.shared = map[blob.Hash][]kez.PublicKey{}
	}
	s.shared[h] = append(s.shared[h], k)
}

func (s *sharer) allow(p kez.PublicKey, h blob.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.shared[h] {
		if k.Equal(p) {
			return true
		}
	}
	return false
}

func TestPeerIDIsTheUsersKey(t *testing.T) {
	k := keztest.NewKey(t)
	id, err := p2p.PeerID(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id.String(), "12D3KooW") {
		t.Fatalf("peer ID %s is not an inlined ed25519 key", id)
	}
	if back, err := p2p.KeyOf(id); err != nil || !back.Equal(k.Public()) {
		t.Fatalf("KeyOf(PeerID(k)) = %v, %v", back, err)
	}
	n := newNode(t, p2p.Config{Key: k})
	if n.ID() != id.String() {
		t.Fatalf("node ID %s, want %s", n.ID(), id)
	}
}

// fetch downloads h of size from the node of key at addrs into dst.
func fetch(t testing.TB, n *p2p.Node, dst *blob.Store, key kez.PublicKey, addrs []string, h blob.Hash, size int64) error {
	t.Helper()
	src, err := n.Peer(key, addrs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return dst.Fetch(ctx, h, size, src, nil)
}

func TestFetch(t *testing.T) {
	for _, tc := range []struct{ name, listen string }{
		{"tcp", loopTCP},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob := keztest.NewKey(t), keztest.NewKey(t)
			as, bs := newStore(t), newStore(t)
			var sh sharer
			an := newNode(t, p2p.Config{Key: alice, Listen: []string{tc.listen}, Store: as, Allow: sh.allow})
			bn := newNode(t, p2p.Config{Key: bob, Listen: []string{tc.listen}, Store: bs})
			h, data := importRandom(t, as, 3<<20+777, 1)
			sh.share(h, bob.Public())
			if err := fetch(t, bn, bs, alice.Public(), an.Addrs(), h, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readBlob(t, bs, h), data) {
				t.Fatal("fetched blob differs")
			}
			if r := bn.Route(alice.Public()); r != "direct" {
				t.Errorf("route %q, want direct", r)
			}
			if tc.name == "tcp" {
				id, _ := p2p.PeerID(alice.Public())
				cs := bn.Host().Network().ConnsToPeer(id)
				if len(cs) == 0 || cs[0].ConnState().Security != libp2ptls.ID {
					t.Errorf("connections %v, want one secured by TLS", cs)
				}
			}
		})
	}
}

// TestNoiseOnlyPeer: a node of an earlier version, which offers only
// Noise, still connects (over Noise).
func TestNoiseOnlyPeer(t *testing.T) {
	an := newNode(t, p2p.Config{})
	old, err := libp2p.New(libp2p.ListenAddrStrings(loopTCP), libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := old.Connect(ctx, peer.AddrInfo{ID: an.Host().ID(), Addrs: an.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	cs := old.Network().ConnsToPeer(an.Host().ID())
	if len(cs) == 0 || cs[0].ConnState().Security != noise.ID {
		t.Fatalf("connections %v, want one secured by Noise", cs)
	}
}

func TestNotShared(t *testing.T) {
	alice, bob, carol := keztest.NewKey(t), keztest.NewKey(t), keztest.NewKey(t)
	as := newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Store: as, Allow: sh.allow})
	h, data := importRandom(t, as, 100_000, 2)
	sh.share(h, bob.Public())
	cs := newStore(t)
	cn := newNode(t, p2p.Config{Key: carol, Store: cs})
	err := fetch(t, cn, cs, alice.Public(), an.Addrs(), h, int64(len(data)))
	if !errors.Is(err, p2p.ErrNotShared) {
		t.Fatalf("carol's fetch: %v, want ErrNotShared", err)
	}
	if cs.Has(h) || cs.Partial(h) != 0 {
		t.Fatal("carol's store holds something of the blob")
	}
	// A blob alice does not hold gets the same answer as one not shared.
	var other blob.Hash
	other[0] = 1
	sh.share(other, carol.Public())
	if err := fetch(t, cn, cs, alice.Public(), an.Addrs(), other, 1000); !errors.Is(err, p2p.ErrNotShared) {
		t.Fatalf("fetch of an absent blob: %v, want ErrNotShared", err)
	}
	// Asking the wrong node: bob's peer ID at alice's addresses fails the
	// handshake instead of talking to alice.
	bs := newStore(t)
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	if err := fetch(t, bn, bs, carol.Public(), an.Addrs(), h, int64(len(data))); !errors.Is(err, p2p.ErrUnreachable) {
		t.Fatalf("fetch from carol at alice's address: %v, want ErrUnreachable", err)
	}
}

// TestCorruptPeer: a node serving bytes that do not match the hash is
// caught at the first bad group; only what verified before it is kept.
func TestCorruptPeer(t *testing.T) {
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Store: as, Allow: sh.allow})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	h, data := importRandom(t, as, 2<<20, 3)
	sh.share(h, bob.Public())
	const bad = 1<<20 + 5000
	f, err := os.OpenFile(filepath.Join(as.Dir(), h.String()), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[bad] ^ 0xff}, bad); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = fetch(t, bn, bs, alice.Public(), an.Addrs(), h, int64(len(data)))
	if !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("fetch from a corrupt peer: %v, want ErrCorrupt", err)
	}
	if bs.Has(h) {
		t.Fatal("corrupt blob was stored as complete")
	}
	if p := bs.Partial(h); p > bad {
		t.Fatalf("kept %d bytes, past the corrupt byte at %d", p, bad)
	}
}

// recording is a Source that records the offsets asked for.
type recording struct {
	blob.Source
	mu   sync.Mutex
	offs []int64
}

func (r *recording) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.offs = append(r.offs, off)
	r.mu.Unlock()
	return r.Source.Slice(ctx, h, off, n)
}

// TestResume: a fetch stopped half way resumes from what it verified.
func TestResume(t *testing.T) {
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Store: as, Allow: sh.allow})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	size := int64(16 << 20)
	h, data := importRandom(t, as, size, 4)
	sh.share(h, bob.Public())
	src, _ := bn.Peer(alice.Public(), an.Addrs())
	rec := &recording{Source: src}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop, cancelStop := context.WithCancel(ctx)
	err := bs.Fetch(stop, h, size, rec, func(v int64) {
		if v >= size/2 {
			cancelStop()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped fetch: %v", err)
	}
	part := bs.Partial(h)
	if part < size/4 || part >= size {
		t.Fatalf("partial %d of %d", part, size)
	}
	if err := bs.Fetch(ctx, h, size, rec, nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.offs[len(rec.offs)-1]; got != part {
		t.Fatalf("resumed from %d, want %d (offsets asked: %v)", got, part, rec.offs)
	}
	if !bytes.Equal(readBlob(t, bs, h), data) {
		t.Fatal("resumed blob differs")
	}
}

// startRelay runs a circuit relay without limits on 127.0.0.1 (package
// relay and cmd/kez-relay are the real one) and returns its address.
func startRelay(t testing.TB) string {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings(loopTCP), libp2p.DisableRelay(),
		libp2p.ForceReachabilityPublic(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(h, relay.WithInfiniteLimits())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); h.Close() })
	return h.Addrs()[0].String() + "/p2p/" + h.ID().String()
}

// TestRelayed: bob reaches alice only through a relay.
func TestRelayed(t *testing.T) {
	relayAddr := startRelay(t)
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Store: as, Allow: sh.allow, Relays: []string{relayAddr}, Reserve: true})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	var circuit []string
	for _, a := range an.Addrs() {
		if strings.HasSuffix(a, "/p2p-circuit") {
			circuit = append(circuit, a)
		}
	}
	if len(circuit) != 1 {
		t.Fatalf("alice's addresses %v: want one relay circuit", an.Addrs())
	}
	ai, _ := peer.AddrInfoFromString(relayAddr)
	if !strings.HasPrefix(circuit[0], ai.Addrs[0].String()+"/p2p/"+ai.ID.String()) {
		t.Fatalf("circuit %s is not through %s", circuit[0], relayAddr)
	}
	h, data := importRandom(t, as, 4<<20, 5)
	sh.share(h, bob.Public())
	if err := fetch(t, bn, bs, alice.Public(), circuit, h, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, bs, h), data) {
		t.Fatal("relayed blob differs")
	}
	if r := bn.Route(alice.Public()); r != "relayed" {
		t.Errorf("route %q, want relayed", r)
	}
}

func TestOffline(t *testing.T) {
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	an := newNode(t, p2p.Config{Key: alice})
	addrs := an.Addrs()
	an.Close()
	bs := newStore(t)
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	var h blob.Hash
	if err := fetch(t, bn, bs, alice.Public(), addrs, h, 100); !errors.Is(err, p2p.ErrUnreachable) {
		t.Fatalf("fetch from an offline node: %v, want ErrUnreachable", err)
	}
}

// TestRelayOnly: a relay-only node listens on no socket of its own, even
// when told to, advertises only its circuit, and still serves and
// fetches through the relay, never dialling a peer directly.
func TestRelayOnly(t *testing.T) {
	relayAddr := startRelay(t)
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Listen: []string{"/ip4/0.0.0.0/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Store: as, Allow: sh.allow, Relays: []string{relayAddr}, Reserve: true, RelayOnly: true})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs, Relays: []string{relayAddr}, RelayOnly: true})
	addrs := an.Addrs()
	if len(addrs) != 1 || !strings.HasSuffix(addrs[0], "/p2p-circuit") {
		t.Fatalf("relay-only addresses %v, want the circuit only", addrs)
	}
	for _, a := range an.Host().Network().ListenAddresses() {
		if !strings.Contains(a.String(), "p2p-circuit") {
			t.Fatalf("relay-only node listens on %s", a)
		}
	}
	h, data := importRandom(t, as, 1<<20, 6)
	sh.share(h, bob.Public())
	// bob, relay-only too, does not dial a direct address of alice's
	// even when given one (this one would answer: it is the relay's).
	direct, _, _ := strings.Cut(relayAddr, "/p2p/")
	if err := fetch(t, bn, bs, alice.Public(), append([]string{direct}, addrs...), h, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if r := bn.Route(alice.Public()); r != "relayed" {
		t.Errorf("route %q, want relayed", r)
	}
	if !bytes.Equal(readBlob(t, bs, h), data) {
		t.Fatal("blob differs")
	}
}

// TestRelayOnlyIdentify: a peer connected to a relay-only node, whether
// it fetches from the node or the node from it, learns no address of it
// but its circuits: not from identify's listen addresses, not from its
// signed peer record.
func TestRelayOnlyIdentify(t *testing.T) {
	relayAddr := startRelay(t)
	alice, bob, carol := keztest.NewKey(t), keztest.NewKey(t), keztest.NewKey(t)
	as, bs, cs := newStore(t), newStore(t), newStore(t)
	var sh sharer
	// Alice listens where kez-chat does by default, were she not
	// relay-only.
	an := newNode(t, p2p.Config{Key: alice, Listen: p2p.DefaultListen, Store: as, Allow: sh.allow,
		Relays: []string{relayAddr}, Reserve: true, RelayOnly: true})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs})
	cn := newNode(t, p2p.Config{Key: carol, Store: cs, Allow: sh.allow, Relays: []string{relayAddr}, Reserve: true})
	ah, _ := importRandom(t, as, 1<<16, 9)
	sh.share(ah, bob.Public())
	ch, _ := importRandom(t, cs, 1<<16, 10)
	sh.share(ch, alice.Public())

	if err := fetch(t, bn, bs, alice.Public(), an.Addrs(), ah, 1<<16); err != nil {
		t.Fatal(err)
	}
	if err := fetch(t, an, as, carol.Public(), cn.Addrs(), ch, 1<<16); err != nil {
		t.Fatal(err)
	}
	id, err := peer.Decode(an.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		n    *p2p.Node
	}{{"fetching from her", bn}, {"fetched from", cn}} {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.n.Host()
			ids := h.(interface{ IDService() identify.IDService }).IDService()
			conns := h.Network().ConnsToPeer(id)
			if len(conns) == 0 {
				t.Fatal("not connected to alice")
			}
			for _, c := range conns {
				select {
				case <-ids.IdentifyWait(c):
				case <-time.After(30 * time.Second):
					t.Fatal("identify of alice did not finish")
				}
			}
			addrs := h.Peerstore().Addrs(id)
			if cab, ok := peerstore.GetCertifiedAddrBook(h.Peerstore()); ok {
				if env := cab.GetPeerRecord(id); env != nil {
					rec, err := env.Record()
					if err != nil {
						t.Fatal(err)
					}
					addrs = append(addrs, rec.(*peer.PeerRecord).Addrs...)
				}
			}
			for _, a := range addrs {
				if !strings.Contains(a.String(), "/p2p-circuit") {
					t.Errorf("a peer of relay-only alice learned her address %s", a)
				}
			}
		})
	}
}

// TestPeerTransferLimit: a peer that opens transfers and does not read
// them holds at most 4 of the node's 16 serving slots: its fifth is
// refused busy (Slice asks again until its caller stops waiting, then
// returns ErrBusy), while another peer still fetches; once it closes
// one, a fifth that waits gets the slot.
func TestPeerTransferLimit(t *testing.T) {
	alice, bob, carol := keztest.NewKey(t), keztest.NewKey(t), keztest.NewKey(t)
	as := newStore(t)
	var sh sharer
	an := newNode(t, p2p.Config{Key: alice, Store: as, Allow: sh.allow})
	bn := newNode(t, p2p.Config{Key: bob})
	cn := newNode(t, p2p.Config{Key: carol})
	// Larger than what flow control lets a stream and the sockets
	// buffer: serving a transfer nobody reads does not finish.
	const size = 48 << 20
	h, data := importRandom(t, as, size, 11)
	sh.share(h, bob.Public())
	sh.share(h, carol.Public())

	src, err := bn.Peer(alice.Public(), an.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var held []io.ReadCloser
	defer func() {
		for _, rc := range held {
			rc.Close()
		}
	}()
	for i := range 4 {
		rc, err := src.Slice(ctx, h, 0, size)
		if err != nil {
			t.Fatalf("transfer %d of one peer: %v", i+1, err)
		}
		held = append(held, rc)
	}
	// A fifth waits for a slot, asking again, and gives up busy when
	// its caller stops waiting.
	short, stop := context.WithTimeout(ctx, time.Second)
	rc, err := src.Slice(short, h, 0, size)
	stop()
	if !errors.Is(err, p2p.ErrBusy) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("fifth transfer of one peer: %v, want ErrBusy", err)
	}
	cs := newStore(t)
	if err := fetch(t, cn, cs, alice.Public(), an.Addrs(), h, size); err != nil {
		t.Fatalf("another peer's fetch meanwhile: %v", err)
	}
	if !bytes.Equal(readBlob(t, cs, h), data) {
		t.Fatal("fetched blob differs")
	}
	// A fifth that waits gets the slot one of the four frees, once the
	// node notices (its write fails).
	fifth := make(chan error, 1)
	go func() {
		rc, err := src.Slice(ctx, h, 0, size)
		if err == nil {
			rc.Close()
		}
		fifth <- err
	}()
	time.Sleep(300 * time.Millisecond) // asked at least once, refused
	held[0].Close()
	held = held[1:]
	if err := <-fifth; err != nil {
		t.Fatalf("fifth transfer once one of the four ended: %v", err)
	}
}

func TestCircuitAddrs(t *testing.T) {
	relay := "/ip4/192.0.2.9/tcp/443/p2p/12D3KooWCSQ5X9ouFNutjdxg7mqrtqDTWiZGjCFKgpRveioeR4Qy/p2p-circuit"
	in := []string{"/ip4/192.0.2.1/tcp/4001", relay, "not an address", "/ip6/::1/udp/1/quic-v1", relay + "/p2p/12D3KooWCSQ5X9ouFNutjdxg7mqrtqDTWiZGjCFKgpRveioeR4Qy"}
	got := p2p.CircuitAddrs(in)
	if want := []string{relay, in[4]}; !slices.Equal(got, want) {
		t.Fatalf("CircuitAddrs(%q) = %q, want %q", in, got, want)
	}
	if got := p2p.CircuitAddrs([]string{"/ip4/192.0.2.1/tcp/4001"}); got != nil {
		t.Fatalf("CircuitAddrs of a direct address = %q, want none", got)
	}
}
