package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"kez.lat/kez"
	"kez.lat/kez/blob"
)

// DefaultListen are the addresses a node listens on by default: TCP and
// QUIC on every interface, ports chosen by the system.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1",
	"/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1",
}

// Config is what a [Node] needs.
type Config struct {
	// Key is the user's key: the node's identity, so its peer ID follows
	// from the user's public key.
	Key *kez.PrivateKey
	// Listen are the multiaddrs to listen on; DefaultListen if empty.
	// Ignored with RelayOnly.
	Listen []string
	// Relays are kez relays (multiaddrs ending in /p2p/<relay id>) the
	// node may use.
	Relays []string
	// Reserve holds a reservation on each relay, so that peers who cannot
	// reach the node directly reach it through them: for a node that
	// serves. A node that only fetches dials through relays without one.
	Reserve bool
	// Store holds the blobs the node serves; nil serves nothing.
	Store *blob.Store
	// Allow reports whether peer may fetch blob h; nil allows nothing.
	// It is called for every request, after the peer's key was
	// authenticated by the connection's handshake.
	Allow func(peer kez.PublicKey, h blob.Hash) bool
	// PortMap asks the home router for a port mapping (UPnP / NAT-PMP).
	PortMap bool
	// RelayOnly keeps the user's IP address from peers: the node
	// listens on no socket of its own (Listen is ignored), advertises
	// only its relay circuit addresses (in Addrs and to every peer it
	// meets, through identify), accepts no direct connection, dials
	// peers only through relays, and does no hole punching. Peers then
	// see the relay's address, not ours.
	RelayOnly bool
	// MaxTransfers bounds the blob requests served at once (default 16).
	MaxTransfers int
	// MaxPeerTransfers bounds the blob requests served to one peer at
	// once (default 4), so that one peer reading slowly cannot hold
	// every one of MaxTransfers: the others are then told the node is
	// busy ([ErrBusy]).
	MaxPeerTransfers int
	// MinRate is the slowest a transfer, fetched or served, may go before
	// it is stopped with [ErrStalled]; zero fields take the defaults of
	// [DefaultMinRate]. Serving, the node judges a peer's reads over
	// four windows at that rate: it sees them in steps of the stream's
	// flow control.
	MinRate MinRate
	// Log receives what the node does; discarded if nil.
	Log *slog.Logger
}

// Validate reports whether the configuration can start a node.
func (c Config) Validate() error {
	if c.Key == nil {
		return errors.New("p2p: no key")
	}
	for _, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("p2p: listen address %q: %w", a, err)
		}
	}
	for _, r := range c.Relays {
		if _, err := peer.AddrInfoFromString(r); err != nil {
			return fmt.Errorf("p2p: relay %q (want a multiaddr ending in /p2p/<id>): %w", r, err)
		}
	}
	return c.MinRate.Validate()
}

// Node is a running libp2p host of one user.
type Node struct {
	cfg   Config
	h     host.Host
	log   *slog.Logger
	slots chan struct{}

	servingMu sync.Mutex
	serving   map[peer.ID]int // transfers being served, by peer

	mu       sync.Mutex
	circuits map[peer.ID][]ma.Multiaddr // relay -> our addresses through it
	changed  chan struct{}              // a reservation came or went

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// HostOptions are the options every kez libp2p host starts with, nodes
// and relays alike: the identity, the listen addresses, TCP and QUIC, and
// the security protocols in the order a dialler proposes them. TLS 1.3
// comes first: both ends have AES-GCM in hardware where Noise is
// ChaCha20-Poly1305, which made the transport's encryption a fifth of a
// fetch's CPU on the receiving side (the file itself is ChaCha20-Poly1305
// already). Noise stays for nodes of earlier versions, which offer only
// that.
func HostOptions(priv crypto.PrivKey, listen []string) []libp2p.Option {
	return []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
	}
}

// New starts a node: it listens, serves /kez/blob/1, and with Reserve
// makes a first reservation on each relay (waiting at most a few seconds
// for each; reservations that fail are retried in the background and
// logged). Without Reserve (and unless RelayOnly) it connects to each
// relay in the background, not waiting, which lets peers hole-punch it.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case cfg.RelayOnly:
		cfg.Listen = nil
	case len(cfg.Listen) == 0:
		cfg.Listen = DefaultListen
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 16
	}
	if cfg.MaxPeerTransfers <= 0 {
		cfg.MaxPeerTransfers = 4
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	priv, err := Identity(cfg.Key)
	if err != nil {
		return nil, err
	}
	opts := append(HostOptions(priv, cfg.Listen),
		libp2p.EnableRelay(),
		libp2p.DialRanker(dialRanker),
		// libp2p would register its metrics on the global Prometheus
		// registry; a client has no metrics endpoint.
		libp2p.DisableMetrics(),
	)
	relays := make([]peer.AddrInfo, len(cfg.Relays))
	relayIDs := map[peer.ID]bool{}
	for i, r := range cfg.Relays {
		ai, _ := peer.AddrInfoFromString(r) // Validate parsed it
		relays[i], relayIDs[ai.ID] = *ai, true
	}
	if cfg.RelayOnly {
		opts = append(opts, libp2p.ConnectionGater(relayOnly{relays: relayIDs}),
			// libp2p's identify tells every peer connected to us, over a
			// relayed connection too, the host's addresses (those of
			// every interface it listens on, and what others observed of
			// it), plain and in a signed peer record: a relay-only node
			// has none to tell. It listens on no socket, so that there
			// are none (dials to the relays need none), and its host's
			// addresses are its circuits at most, should libp2p add
			// others (such as observed addresses).
			libp2p.NoListenAddrs,
			libp2p.AddrsFactory(circuitsOnly))
	} else {
		opts = append(opts, libp2p.EnableHolePunching())
		if cfg.PortMap {
			opts = append(opts, libp2p.NATPortMap())
		}
	}
	if len(cfg.Relays) > 0 {
		// Without AutoNAT servers in a closed network reachability stays
		// unknown; we hold reservations anyway, and say so.
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start host: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, h: h, log: log, slots: make(chan struct{}, cfg.MaxTransfers), serving: map[peer.ID]int{},
		circuits: map[peer.ID][]ma.Multiaddr{}, changed: make(chan struct{}, 1), cancel: cancel}
	h.SetStreamHandler(BlobProtocol, n.serve)
	var first sync.WaitGroup
	for _, ai := range relays {
		switch {
		case cfg.Reserve:
			first.Add(1)
			n.wg.Go(func() { n.reserveLoop(rctx, ai, first.Done) })
		case !cfg.RelayOnly:
			// A fetching node connects to its relays at once, in the
			// background, so that it may be hole-punched: the peer it
			// reaches through a relay starts DCUtR as soon as the relayed
			// connection is up, once, and that fails unless we already
			// serve /libp2p/dcutr. libp2p serves it only once the host
			// knows a public address of its own, which only a relay's
			// identify tells (our observed address); it looks for one at
			// the start, then after 250 ms, 750 ms, 1.75 s and so on. A
			// peer with direct addresses is dialled through a relay 500 ms
			// late (swarm.RelayDelay, dialRanker), by when we usually
			// serve it. A serving node has an observed address from its
			// reservations.
			n.wg.Go(func() {
				cctx, cancel := context.WithTimeout(rctx, reserveTimeout)
				defer cancel()
				if err := h.Connect(cctx, ai); err != nil && rctx.Err() == nil {
					n.log.Debug("relay connection failed", "relay", ai.ID, "err", err)
				}
			})
		}
	}
	wait := make(chan struct{})
	go func() { first.Wait(); close(wait) }()
	select {
	case <-wait:
	case <-ctx.Done():
		n.Close()
		return nil, ctx.Err()
	}
	return n, nil
}

// Close stops the node.
func (n *Node) Close() error {
	n.cancel()
	err := n.h.Close()
	n.wg.Wait()
	return err
}

// ID returns the node's peer ID.
func (n *Node) ID() string { return n.h.ID().String() }

// Host returns the libp2p host, for tests and diagnostics.
func (n *Node) Host() host.Host { return n.h }

// MaxAddrs bounds the addresses a node advertises (as many as a
// sigchain p2p endpoint holds).
const MaxAddrs = 32

// Addrs returns the addresses to advertise, at most MaxAddrs: first an
// address through each relay holding a reservation for us, then the
// listening addresses on every interface (loopback last, link-local
// left out). They do not end in /p2p/<id>.
func (n *Node) Addrs() []string {
	var out, loop []string
	n.mu.Lock()
	relays := make([]peer.ID, 0, len(n.circuits))
	for id := range n.circuits {
		relays = append(relays, id)
	}
	slices.Sort(relays)
	for _, id := range relays {
		for _, a := range n.circuits[id] {
			out = append(out, a.String())
		}
	}
	n.mu.Unlock()
	if n.cfg.RelayOnly {
		return out[:min(len(out), MaxAddrs)]
	}
	if as, err := n.h.Network().InterfaceListenAddresses(); err == nil {
		for _, a := range as {
			switch {
			case isCircuit(a), manet.IsIP6LinkLocal(a):
				// The relay transport "listens" on a bare /p2p-circuit,
				// not an address anyone can dial; link-local needs a zone.
			case manet.IsIPLoopback(a):
				loop = append(loop, a.String())
			default:
				out = append(out, a.String())
			}
		}
	}
	out = append(out, loop...)
	return out[:min(len(out), MaxAddrs)]
}

// circuitsOnly returns the relay circuit addresses of as, in a new
// slice (libp2p may pass its own).
func circuitsOnly(as []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range as {
		if isCircuit(a) {
			out = append(out, a)
		}
	}
	return out
}

// CircuitAddrs returns the addresses of addrs that are relay circuit
// addresses (through /p2p-circuit), in order: those a relay-only node
// may advertise. Others, and any that do not parse, are left out.
func CircuitAddrs(addrs []string) []string {
	var out []string
	for _, s := range addrs {
		if a, err := ma.NewMultiaddr(s); err == nil && isCircuit(a) {
			out = append(out, s)
		}
	}
	return out
}

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Port returns the TCP port the node listens on over IPv4 (0 if none),
// so that a client can listen on the same port next time and its
// advertised addresses stay the same.
func (n *Node) Port() int {
	for _, a := range n.h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_IP4); err != nil {
			continue
		}
		if p, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			var port int
			if _, err := fmt.Sscan(p, &port); err == nil {
				return port
			}
		}
	}
	return 0
}

// reserveTimeout bounds one reservation attempt.
const reserveTimeout = 5 * time.Second

// reserveLoop holds a reservation on relay ai: it reserves, renews a
// minute before expiry (or at once when the relay connection drops), and
// retries failures with a backoff up to a minute. first is called after
// the first attempt.
func (n *Node) reserveLoop(ctx context.Context, ai peer.AddrInfo, first func()) {
	backoff := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
		res, err := client.Reserve(rctx, n.h, ai)
		cancel()
		wait := backoff
		if err != nil {
			if ctx.Err() != nil {
				first()
				return
			}
			n.log.Warn("relay reservation failed", "relay", ai.ID, "err", err)
			n.setCircuits(ai.ID, nil)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
			var addrs []ma.Multiaddr
			for _, a := range ai.Addrs {
				addrs = append(addrs, a.Encapsulate(ma.StringCast("/p2p/"+ai.ID.String()+"/p2p-circuit")))
			}
			n.setCircuits(ai.ID, addrs)
			n.log.Debug("relay reservation", "relay", ai.ID, "expires", res.Expiration)
			wait = max(time.Until(res.Expiration)-time.Minute, 10*time.Second)
		}
		first()
		first = func() {}
		// Renew early if the connection to the relay goes: the relay drops
		// the reservation with it.
		t := time.NewTimer(wait)
		tick := time.NewTicker(5 * time.Second)
	watch:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				tick.Stop()
				return
			case <-t.C:
				break watch
			case <-tick.C:
				if err == nil && n.h.Network().Connectedness(ai.ID) != network.Connected {
					break watch
				}
			}
		}
		t.Stop()
		tick.Stop()
	}
}

func (n *Node) setCircuits(relay peer.ID, addrs []ma.Multiaddr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, had := n.circuits[relay]
	if addrs == nil {
		delete(n.circuits, relay)
	} else {
		n.circuits[relay] = addrs
	}
	if had != (addrs != nil) {
		select {
		case n.changed <- struct{}{}:
		default:
		}
	}
}

// AddrsChanged receives when a relay reservation was made or lost, and so
// [Node.Addrs] changed; interface addresses are not watched.
func (n *Node) AddrsChanged() <-chan struct{} { return n.changed }

// Route describes how the node is connected to a peer: "direct",
// "relayed", or "" when not connected.
func (n *Node) Route(key kez.PublicKey) string {
	id, err := PeerID(key)
	if err != nil {
		return ""
	}
	switch {
	case n.direct(id):
		return "direct"
	case len(n.h.Network().ConnsToPeer(id)) > 0:
		return "relayed"
	}
	return ""
}

// direct reports whether the node has a direct connection to id.
func (n *Node) direct(id peer.ID) bool {
	for _, c := range n.h.Network().ConnsToPeer(id) {
		if !isRelayed(c) {
			return true
		}
	}
	return false
}

func isRelayed(c network.Conn) bool {
	return c.Stat().Limited || strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit")
}

// ListenOn returns DefaultListen with port instead of 0: TCP and QUIC on
// every interface.
func ListenOn(port int) []string {
	out := make([]string, len(DefaultListen))
	for i, a := range DefaultListen {
		a = strings.Replace(a, "/tcp/0", fmt.Sprintf("/tcp/%d", port), 1)
		out[i] = strings.Replace(a, "/udp/0/", fmt.Sprintf("/udp/%d/", port), 1)
	}
	return out
}

// relayOnly is the connection gater of a RelayOnly node: connections to
// and from peers only through a relay; direct ones only to the relays.
type relayOnly struct{ relays map[peer.ID]bool }

func (g relayOnly) InterceptPeerDial(peer.ID) bool { return true }

func (g relayOnly) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return g.relays[p] || isCircuit(a)
}

func (g relayOnly) InterceptAccept(c network.ConnMultiaddrs) bool {
	return isCircuit(c.RemoteMultiaddr())
}

func (g relayOnly) InterceptSecured(_ network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return g.relays[p] || isCircuit(c.RemoteMultiaddr())
}

func (g relayOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// dialRanker is libp2p's default ranking, with two changes:
//
//   - When all of a peer's direct addresses are private, its relay
//     addresses also wait swarm.RelayDelay: libp2p dials the relay at
//     once then (a private address is often another network's), and the
//     relayed connection won the race even between two machines on one
//     LAN, spending the relay's bandwidth on them. Direct addresses that
//     do not answer cost a transfer 500 ms.
//   - When a peer has a private TCP address (a LAN, this machine), that
//     is dialled at once and every QUIC address waits lanQUICDelay:
//     libp2p prefers QUIC, and quic-go costs about twice the CPU per
//     byte of TCP+Noise+yamux (before TLS came first), so a 1 GiB fetch on loopback ran at
//     85-100 MiB/s over QUIC against 180-250 MiB/s over TCP
//     (TestBenchFiles). A peer met over the internet that lists private
//     addresses of its own network costs 250 ms before QUIC; one with
//     public addresses only keeps libp2p's order, QUIC first.
func dialRanker(addrs []ma.Multiaddr) []network.AddrDelay {
	ranked := swarm.DefaultDialRanker(addrs)
	direct, public, lanTCP := false, false, false
	for _, a := range addrs {
		if isCircuit(a) {
			continue
		}
		direct = true
		public = public || !manet.IsPrivateAddr(a)
		lanTCP = lanTCP || (manet.IsPrivateAddr(a) && isTCP(a))
	}
	for i := range ranked {
		a := ranked[i].Addr
		switch {
		case isCircuit(a):
			if direct && !public { // with a public address libp2p delays the relay already
				ranked[i].Delay += swarm.RelayDelay
			}
		case lanTCP && isQUIC(a):
			ranked[i].Delay += lanQUICDelay
		case lanTCP && isTCP(a) && manet.IsPrivateAddr(a):
			ranked[i].Delay = 0
		}
	}
	return ranked
}

// lanQUICDelay is how long a QUIC dial on a LAN waits for TCP to connect
// first: a TCP+TLS+yamux handshake on a LAN takes a few milliseconds.
const lanQUICDelay = 250 * time.Millisecond

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

func isTCP(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}
