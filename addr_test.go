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
