package relay

import (
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// circuitBuffer is the copy buffer per direction of a circuit. libp2p's
// default (2 KiB) costs one read and write per 2 KiB of file; 16 KiB
// matches a Bao chunk group and keeps a circuit at 32 KiB of relay memory.
const circuitBuffer = 16 << 10

// limits returns the resource-manager limits of a relay host: libp2p's
// defaults with its service limits, scaled to MaxMemory, then the
// system, transient and relay-service scopes sized from the relay's own
// counts. A relay holding hundreds of reservations would otherwise hit
// the defaults (conns scaled from RAM, 256 relay streams) long before its
// CPU or link is busy.
func limits(cfg Config) rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(cfg.MaxMemory, cfg.MaxConns+256)

	conns := rcmgr.LimitVal(cfg.MaxConns)
	// Each circuit is two streams on the relay (hop from the source, stop
	// to the destination); allow two circuits per reservation on average,
	// and MaxCircuits per peer in each role.
	relayStreams := rcmgr.LimitVal(4 * cfg.MaxReservations)
	relayMemory := rcmgr.LimitVal64(int64(2*circuitBuffer)*int64(2*cfg.MaxReservations) + 16<<20)
	perPeer := rcmgr.LimitVal(4 * cfg.MaxCircuits)
	transient := rcmgr.LimitVal(max(64, cfg.MaxConns/8))

	relayScope := rcmgr.ResourceLimits{Streams: relayStreams, StreamsInbound: relayStreams, StreamsOutbound: relayStreams, Memory: relayMemory}
	relayPeer := rcmgr.ResourceLimits{Streams: perPeer, StreamsInbound: perPeer, StreamsOutbound: perPeer}
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: conns, ConnsInbound: conns, ConnsOutbound: conns,
			Streams: 16 * conns, StreamsInbound: 16 * conns, StreamsOutbound: 16 * conns,
			FD:     conns + 256,
			Memory: rcmgr.LimitVal64(cfg.MaxMemory),
		},
		Transient: rcmgr.ResourceLimits{Conns: transient, ConnsInbound: transient, ConnsOutbound: transient},
		Service:   map[string]rcmgr.ResourceLimits{relayv2.ServiceName: relayScope},
		ServicePeer: map[string]rcmgr.ResourceLimits{
			relayv2.ServiceName: relayPeer,
		},
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			circuit.ProtoIDv2Hop: relayScope, circuit.ProtoIDv2Stop: relayScope,
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			circuit.ProtoIDv2Hop: relayPeer, circuit.ProtoIDv2Stop: relayPeer,
		},
	}
	return partial.Build(base)
}
