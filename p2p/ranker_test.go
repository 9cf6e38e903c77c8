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
	if d := delays(relay); d[relay] != 0 {
		t.Errorf("relay alone dialled after %v, want at once", d[relay])
	}
}
