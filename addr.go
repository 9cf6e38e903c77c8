package kez

import "net/netip"

// ClientBlock returns the block of addresses that limits per client count
// as one client: an IPv4 address itself (an IPv4-mapped IPv6 address as
// IPv4), an IPv6 address's /64 prefix, the block one subscriber usually
// holds, so that rotating through it buys nothing.
func ClientBlock(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return addr
}

// ClientNet returns the wider block limits per client also count, with a
// larger budget: an IPv6 address's /48, the prefix a site or a hosting
// customer is usually routed. A /48 holds 65,536 /64s, so without this
// tier its holder escapes a per-ClientBlock limit one /64 at a time.
//
// For IPv4 (and IPv4-mapped IPv6) it returns the zero, invalid Prefix:
// there is no wider IPv4 tier. A /24 is no one network: carrier-grade
// NAT and shared hosting put unrelated clients side by side in one, so a
// budget for it would lock them out for an attacker they share nothing
// with, and IPv4 addresses are scarce enough that one address, already
// limited by ClientBlock, is what a client holds.
func ClientNet(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if !addr.Is6() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(addr, 48).Masked()
}
