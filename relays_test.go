package kez_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"kez.lat/kez"
)

const relayID = "12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"

func TestParseRelayAddr(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID, "/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID},
		{"/ip6/2001:db8::1/tcp/4001/p2p/" + relayID, "/ip6/2001:db8::1/tcp/4001/p2p/" + relayID},
		{"/dns4/relay.kez.lat/tcp/4001/p2p/" + relayID, "/dns4/relay.kez.lat/tcp/4001/p2p/" + relayID},
		{"/ip4/203.0.113.7/tcp/4001/ipfs/" + relayID, "/ip4/203.0.113.7/tcp/4001/p2p/" + relayID}, // legacy name
		{"/ip4/203.0.113.7/tcp/4001", ""},
		{"/p2p/" + relayID, ""},
		{"/ip4/203.0.113.7/tcp/4001/p2p/" + relayID + "/p2p-circuit/p2p/" + relayID, ""},
		{"/ip4/203.0.113.7/tcp/4001/p2p/" + relayID + "/tcp/1", ""},
		{"/ip4/203.0.113.7/tcp/4001/p2p/notapeerid", ""},
		{"203.0.113.7:4001", ""},
		{"", ""},
		{"/dns4/" + strings.Repeat("a", 600) + "/tcp/1/p2p/" + relayID, ""},
	} {
		got, err := kez.ParseRelayAddr(tt.in)
		if tt.want == "" {
			if !errors.Is(err, kez.ErrRelayAddr) {
				t.Errorf("ParseRelayAddr(%q) = %q, %v, want ErrRelayAddr", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRelayAddr(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRelayAddrs(t *testing.T) {
	good := "/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID
	got := kez.ParseRelayAddrs([]string{"junk", good, good, "/ip4/203.0.113.7/tcp/4001"})
	if len(got) != 1 || got[0] != good {
		t.Errorf("ParseRelayAddrs = %q, want [%q]", got, good)
	}
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("/ip4/203.0.113.7/tcp/%d/p2p/%s", 4000+i, relayID))
	}
	if got := kez.ParseRelayAddrs(many); len(got) != kez.MaxRelays {
		t.Errorf("kept %d relays, want %d", len(got), kez.MaxRelays)
	}
	if got := kez.ParseRelayAddrs(nil); got != nil {
		t.Errorf("ParseRelayAddrs(nil) = %q", got)
	}
}

// FuzzParseRelayAddr: a record's relays come from a server the client
// does not trust; parsing must not panic, and what it accepts is canonical
// (parses to itself) and ends in the relay's /p2p/.
func FuzzParseRelayAddr(f *testing.F) {
	for _, s := range []string{
		"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID,
		"/ip6/::1/tcp/1/p2p/" + relayID,
		"/dns/x/tcp/1/ipfs/" + relayID,
		"/ip4/1.2.3.4/tcp/1/p2p/" + relayID + "/p2p-circuit",
		"/unix/a/b/p2p/" + relayID,
		"/ip4/1.2.3.4",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := kez.ParseRelayAddr(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error with a result %q", got)
			}
			return
		}
		again, err := kez.ParseRelayAddr(got)
		if err != nil || again != got {
			t.Fatalf("canonical form %q re-parses to %q, %v", got, again, err)
		}
		if !strings.Contains(got, "/p2p/") || strings.Contains(got, "/p2p-circuit") {
			t.Fatalf("accepted %q", got)
		}
		if l := kez.ParseRelayAddrs([]string{s, s}); len(l) != 1 || l[0] != got {
			t.Fatalf("ParseRelayAddrs = %q", l)
		}
	})
}
