package kez_test

import (
	"net/netip"
	"testing"

	"kez.lat/kez"
)

func TestClientBlock(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":          "203.0.113.9",
		"::ffff:203.0.113.9":   "203.0.113.9",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::",
		"2001:db8:1:3::1":      "2001:db8:1:3::",
		"::1":                  "::",
	} {
		if got := kez.ClientBlock(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("ClientBlock(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestClientNet(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":             "invalid Prefix",
		"::ffff:203.0.113.9":      "invalid Prefix",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1::/48",
		"2001:db8:1:ffff:ffff::1": "2001:db8:1::/48",
		"2001:db8:2::1":           "2001:db8:2::/48",
		"::1":                     "::/48",
	} {
		if got := kez.ClientNet(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("ClientNet(%s) = %s, want %s", in, got, want)
		}
	}
}
