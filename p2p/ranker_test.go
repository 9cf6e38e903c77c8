package p2p

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

func TestDialRankerPrefersDirectOnALAN(t *testing.T) {
	const relay = "/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
	delays := func(addrs ...string) map[string]time.Duration {
		var ms []ma.Multiaddr
		for _, a := range addrs {
			ms = append(ms, ma.StringCast(a))
		}
		out := map[string]time.Duration{}
		for _, d := range dialRanker(ms) {
			out[d.Addr.String()] = d.Delay
		}
		return out
	}
	if d := delays("/ip4/192.168.1.20/tcp/4242", relay); d[relay] < swarm.RelayDelay {
		t.Errorf("relay dialled after %v beside a private direct address, want at least %v", d[relay], swarm.RelayDelay)
	}
	if d := delays("/ip4/198.51.100.7/tcp/4242", relay); d[relay] != swarm.RelayDelay {
		t.Errorf("relay dialled after %v beside a public direct address, want libp2p's %v", d[relay], swarm.RelayDelay)
	}
	const lanTCP, lanQUIC = "/ip4/192.168.1.20/tcp/4242", "/ip4/192.168.1.20/udp/4242/quic-v1"
	if d := delays(lanQUIC, lanTCP); d[lanTCP] != 0 || d[lanQUIC] < lanQUICDelay {
		t.Errorf("on a LAN TCP dialled after %v and QUIC after %v, want TCP at once and QUIC after %v", d[lanTCP], d[lanQUIC], lanQUICDelay)
	}
	const loTCP = "/ip4/127.0.0.1/tcp/4242"
	if d := delays("/ip4/192.0.2.2/udp/4242/quic-v1", loTCP); d[loTCP] != 0 || d["/ip4/192.0.2.2/udp/4242/quic-v1"] < lanQUICDelay {
		t.Errorf("beside a public QUIC address, loopback TCP dialled after %v and QUIC after %v, want TCP at once and QUIC after %v",
			d[loTCP], d["/ip4/192.0.2.2/udp/4242/quic-v1"], lanQUICDelay)
	}
	const pubTCP, pubQUIC = "/ip4/198.51.100.7/tcp/4242", "/ip4/198.51.100.7/udp/4242/quic-v1"
	if d := delays(pubQUIC, pubTCP); d[pubQUIC] != 0 || d[pubTCP] == 0 {
		t.Errorf("on the internet QUIC dialled after %v and TCP after %v, want libp2p's order: QUIC first", d[pubQUIC], d[pubTCP])
	}
	if d := delays(relay); d[relay] != 0 {
		t.Errorf("relay alone dialled after %v, want at once", d[relay])
	}
}
