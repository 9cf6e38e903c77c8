package kez

import (
	"errors"
	"fmt"

	ma "github.com/multiformats/go-multiaddr"
)

// MaxRelays bounds the relays a record lists; a client ignores the rest.
const MaxRelays = 16

// maxRelayAddrLen bounds one relay address in its text form.
const maxRelayAddrLen = 512

// ErrRelayAddr is wrapped by ParseRelayAddr errors.
var ErrRelayAddr = errors.New("invalid relay address")

// ParseRelayAddr checks that s is a relay's multiaddr as records carry
// it, a transport address followed by the relay's /p2p/<peer id>
// (/ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooW...), with no other
// /p2p or /p2p-circuit part, and returns its canonical text form.
// Errors wrap [ErrRelayAddr].
func ParseRelayAddr(s string) (string, error) {
	if len(s) > maxRelayAddrLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrRelayAddr, maxRelayAddrLen)
	}
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRelayAddr, err)
	}
	rest, last := ma.SplitLast(a)
	if last == nil || last.Code() != ma.P_P2P {
		return "", fmt.Errorf("%w: must end in /p2p/<peer id>", ErrRelayAddr)
	}
	if len(rest) == 0 {
		return "", fmt.Errorf("%w: no transport address before /p2p", ErrRelayAddr)
	}
	for _, c := range rest {
		if c.Code() == ma.P_P2P || c.Code() == ma.P_CIRCUIT {
			return "", fmt.Errorf("%w: a relay address holds one /p2p and no /p2p-circuit", ErrRelayAddr)
		}
	}
	return a.String(), nil
}

// ParseRelayAddrs returns the canonical form of each address in addrs
// that [ParseRelayAddr] accepts, at most [MaxRelays] of them, without
// duplicates: what a client takes from a record's "relays", a hint it
// can do without, so bad entries are dropped rather than failing the
// record.
func ParseRelayAddrs(addrs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range addrs {
		if len(out) == MaxRelays {
			break
		}
		a, err := ParseRelayAddr(s)
		if err != nil || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}
