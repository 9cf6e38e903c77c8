package p2p_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
)

// testRate is a MinRate small enough for a test to hit: the first byte
// within a second, then 64 KiB every half second.
var testRate = p2p.MinRate{FirstByte: time.Second, Bytes: 64 << 10, Window: 500 * time.Millisecond}

// hostileServer is a libp2p host with key's identity that answers
// /kez/blob/1 as serve tells it, from store: a peer that is not a kez
// node, such as a hostile or frozen one. It returns its addresses.
func hostileServer(t testing.TB, key *kez.PrivateKey, serve func(s network.Stream, off, n int64)) []string {
	t.Helper()
	priv, err := p2p.Identity(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(append(p2p.HostOptions(priv, []string{loopTCP}), libp2p.DisableRelay(), libp2p.DisableMetrics())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(p2p.BlobProtocol, func(s network.Stream) {
		defer s.Reset()
		req := make([]byte, 48)
		if _, err := io.ReadFull(s, req); err != nil {
			return
		}
		serve(s, int64(binary.BigEndian.Uint64(req[32:])), int64(binary.BigEndian.Uint64(req[40:])))
	})
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	return addrs
}

// trickle writes the first fast bytes written to it at once, then one
// byte every so often, the way a peer that wants to hold a transfer open
// would, until the stream fails.
type trickle struct {
	w     io.Writer
	fast  int
	every time.Duration
}

func (t *trickle) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		if t.fast > 0 {
			n, err := t.w.Write(b[done:min(len(b), done+t.fast)])
			t.fast -= n
			done += n
			if err != nil {
				return done, err
			}
			continue
		}
		time.Sleep(t.every)
		n, err := t.w.Write(b[done : done+1])
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// TestStalledPeer: a peer that sends a byte now and then, after a
// first burst, is dropped once it sends fewer than MinRate's bytes in
// its window: the fetch fails within the bound with ErrStalled naming
// the peer, and keeps what verified, from which the next fetch resumes
// (here from the same peer, no longer trickling).
func TestStalledPeer(t *testing.T) {
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	const size = 2 << 20
	h, data := importRandom(t, as, size, 12)
	var slow atomic.Bool
	slow.Store(true)
	addrs := hostileServer(t, alice, func(s network.Stream, off, n int64) {
		s.Write([]byte{0}) // statusOK
		var w io.Writer = s
		if slow.Load() {
			w = &trickle{w: s, fast: 512 << 10, every: 100 * time.Millisecond}
		}
		as.WriteSlice(w, h, off, n)
		s.Close()
	})
	bn := newNode(t, p2p.Config{Key: bob, Store: bs, MinRate: testRate})
	src, err := bn.Peer(alice.Public(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{Source: src}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = bs.Fetch(ctx, h, size, rec, nil)
	took := time.Since(start)
	t.Logf("%v after %s", err, took)
	if !errors.Is(err, p2p.ErrStalled) {
		t.Fatalf("fetch from a trickling peer: %v after %s, want ErrStalled", err, took)
	}
	// The burst, then one window of trickle (and the marks' leeway),
	// then the scheduler of a loaded machine.
	if took > 5*time.Second {
		t.Errorf("the stall was noticed after %s", took)
	}
	if id, _ := p2p.PeerID(alice.Public()); !strings.Contains(err.Error(), id.String()) {
		t.Errorf("error %q does not name the peer %s", err, id)
	}
	part := bs.Partial(h)
	if part < 256<<10 || part >= size {
		t.Fatalf("kept %d bytes of the %d sent at once", part, 512<<10)
	}
	slow.Store(false)
	if err := bs.Fetch(ctx, h, size, rec, nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.offs[len(rec.offs)-1]; got != part {
		t.Fatalf("resumed from %d, want %d", got, part)
	}
	if !bytes.Equal(readBlob(t, bs, h), data) {
		t.Fatal("resumed blob differs")
	}
}

// TestTricklingPeer: a peer that sends a byte more often than the
// pacer's marks are apart (Window/16), after a first burst, is stopped
// about a window after the burst, as one sending a byte now and then
// (TestStalledPeer).
func TestTricklingPeer(t *testing.T) {
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as, bs := newStore(t), newStore(t)
	const size = 2 << 20
	h, _ := importRandom(t, as, size, 12)
	addrs := hostileServer(t, alice, func(s network.Stream, off, n int64) {
		s.Write([]byte{0}) // statusOK
		as.WriteSlice(&trickle{w: s, fast: 512 << 10, every: 10 * time.Millisecond}, h, off, n)
		s.Close()
	})
	// 64 KiB every 1.6 s: marks 100 ms apart, a byte every 10 ms.
	rate := p2p.MinRate{FirstByte: time.Second, Bytes: 64 << 10, Window: 1600 * time.Millisecond}
	bn := newNode(t, p2p.Config{Key: bob, Store: bs, MinRate: rate})
	src, err := bn.Peer(alice.Public(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = bs.Fetch(ctx, h, size, src, nil)
	took := time.Since(start)
	// The burst, a window and its leeway, the scheduler of a loaded
	// machine.
	if !errors.Is(err, p2p.ErrStalled) || took > 5*time.Second {
		t.Fatalf("fetch from a peer sending 100 B/s (minimum 40 KiB/s): %v after %s, want ErrStalled within about 2s", err, took)
	}
}

// TestSilentPeer: a peer that accepts the stream and then says nothing,
// or agrees to send and sends nothing, costs FirstByte.
func TestSilentPeer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer bool
	}{{"no answer", false}, {"no data", true}} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob := keztest.NewKey(t), keztest.NewKey(t)
			addrs := hostileServer(t, alice, func(s network.Stream, _, _ int64) {
				if tc.answer {
					s.Write([]byte{0})
				}
				time.Sleep(30 * time.Second) // or until the stream is reset
			})
			bs := newStore(t)
			bn := newNode(t, p2p.Config{Key: bob, Store: bs, MinRate: testRate})
			var h blob.Hash
			start := time.Now()
			err := fetch(t, bn, bs, alice.Public(), addrs, h, 1<<20)
			took := time.Since(start)
			if !errors.Is(err, p2p.ErrStalled) {
				t.Fatalf("fetch from a silent peer: %v after %s, want ErrStalled", err, took)
			}
			if took > 4*time.Second {
				t.Errorf("the silence was noticed after %s", took)
			}
		})
	}
}

// TestStalledReader: a serving node drops a transfer whose peer stops
// reading, freeing its slot: a peer that opens transfers and reads none
// of them holds the node's slots for MinRate's bounds, not forever.
func TestStalledReader(t *testing.T) {
	src, h := bigShare(t, p2p.Config{MaxPeerTransfers: 1, MinRate: testRate})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	held, err := src.Slice(ctx, h, 0, bigShareSize)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// Bob's one slot is taken until alice drops the transfer he does
	// not read; Slice asks again meanwhile.
	start := time.Now()
	rc, err := src.Slice(ctx, h, 0, bigShareSize)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("a second transfer after the first stalled: %v after %s", err, took)
	}
	rc.Close()
	t.Logf("slot free after %s", took)
	// Four windows of testRate (servingWindows) after bob's receive
	// window filled, then Slice's next try: at 3.75 s, or 7.75 s on a
	// loaded machine.
	if took > 12*time.Second {
		t.Errorf("the slot came free after %s", took)
	}
}

// TestSlowReader: a serving node goes on serving a peer that reads
// slowly but above its MinRate (here twice it): it stops only those
// that read less.
func TestSlowReader(t *testing.T) {
	src, h := bigShare(t, p2p.Config{MinRate: testRate})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := src.Slice(ctx, h, 0, bigShareSize)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// 256 KiB/s, twice testRate's 128 KiB/s, for 8 s.
	const rate = 256 << 10
	buf := make([]byte, 8<<10)
	var got int
	start := time.Now()
	for time.Since(start) < 8*time.Second {
		n, err := rc.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("reading at 256 KiB/s (serving minimum 128 KiB/s): %v after %d bytes, %s", err, got, time.Since(start))
		}
		time.Sleep(time.Duration(float64(n) / rate * float64(time.Second)))
	}
	t.Logf("read %d bytes in %s", got, time.Since(start))
}

// bigShareSize is larger than what flow control lets a stream and the
// sockets buffer: serving a transfer nobody reads does not finish.
const bigShareSize = 48 << 20

// bigShare starts alice's node (cfg, with her key and store) sharing a
// blob of bigShareSize zeros with bob, and returns bob's source for
// alice and the blob's hash.
func bigShare(t *testing.T, cfg p2p.Config) (blob.Source, blob.Hash) {
	t.Helper()
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	as := newStore(t)
	var sh sharer
	cfg.Key, cfg.Store, cfg.Allow = alice, as, sh.allow
	an := newNode(t, cfg)
	bn := newNode(t, p2p.Config{Key: bob})
	h, err := as.Import(bytes.NewReader(make([]byte, bigShareSize)), bigShareSize)
	if err != nil {
		t.Fatal(err)
	}
	sh.share(h, bob.Public())
	src, err := bn.Peer(alice.Public(), an.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	return src, h
}
