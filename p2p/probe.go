package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	manet "github.com/multiformats/go-multiaddr/net"

	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
)

// Reachability is what a relay's AutoNAT answer says about reaching this
// device directly.
type Reachability string

// What a relay answers to "dial me back" (AutoNAT v1, which kez-relay
// serves).
const (
	// ReachPublic: the relay dialled this device back at the address it
	// sees: peers on the internet reach it directly.
	ReachPublic Reachability = "public"
	// ReachPrivate: the relay tried and could not: a NAT or firewall is in
	// the way; peers reach this device through a relay, or directly only
	// when hole punching works.
	ReachPrivate Reachability = "private"
	// ReachLocal: the relay would not try, because it sees this device at
	// a private or loopback address: both are on one local network, where
	// peers connect directly; across the internet it tells nothing.
	ReachLocal Reachability = "local"
	// ReachUnknown: no answer (the relay does not serve AutoNAT, or the
	// request failed).
	ReachUnknown Reachability = "unknown"
)

// RelayProbe is what [Probe] found of one relay.
type RelayProbe struct {
	// Relay is the relay's multiaddr, as the home server advertises it.
	Relay string
	// Err is why no connection could be made; nil when one was.
	Err error
	// Connect is how long the connection (handshake included) took.
	Connect time.Duration
	// Reach is the relay's answer to the dial-back request; ReachErr its
	// detail when not ReachPublic.
	Reach    Reachability
	ReachErr error
}

// ProbeResult is what [Probe] found.
type ProbeResult struct {
	// Listen are the addresses the probe listened on.
	Listen []string
	// Public are the listen addresses on this device's interfaces that
	// are public (routable on the internet).
	Public []string
	// Relays has one entry per relay asked, in order.
	Relays []RelayProbe
}

// probeTimeout bounds each relay's connection and dial-back.
const probeTimeout = 10 * time.Second

// Probe checks what the user's node would meet, without being it: a
// throwaway libp2p host with a random identity (so that it never
// disturbs the user's running node or its relay reservations) listens on
// listen (DefaultListen if empty), connects to each relay and asks it to
// dial back. It fails only if the host cannot start (listen).
func Probe(ctx context.Context, relays, listen []string) (ProbeResult, error) {
	if len(listen) == 0 {
		listen = DefaultListen
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("p2p: listen on %v: %w", listen, err)
	}
	defer h.Close()
	var res ProbeResult
	if as, err := h.Network().InterfaceListenAddresses(); err == nil {
		for _, a := range as {
			res.Listen = append(res.Listen, a.String())
			if manet.IsPublicAddr(a) {
				res.Public = append(res.Public, a.String())
			}
		}
	}
	an := autonat.NewAutoNATClient(h, nil, nil)
	for _, r := range relays {
		rp := RelayProbe{Relay: r, Reach: ReachUnknown}
		ai, err := peer.AddrInfoFromString(r)
		if err != nil {
			rp.Err = fmt.Errorf("not a relay address (want a multiaddr ending in /p2p/<id>): %w", err)
			res.Relays = append(res.Relays, rp)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		start := time.Now()
		if rp.Err = h.Connect(cctx, *ai); rp.Err == nil {
			rp.Connect = time.Since(start)
			rp.Reach, rp.ReachErr = reachability(an.DialBack(cctx, ai.ID))
		}
		cancel()
		res.Relays = append(res.Relays, rp)
	}
	return res, nil
}

// reachability reads an AutoNAT v1 dial-back answer.
func reachability(err error) (Reachability, error) {
	switch {
	case err == nil:
		return ReachPublic, nil
	case autonat.IsDialRefused(err):
		return ReachLocal, err
	case autonat.IsDialError(err):
		return ReachPrivate, err
	}
	return ReachUnknown, err
}
