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
