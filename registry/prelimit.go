package registry

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/time/rate"

	"kez.lat/kez"
)

// The defaults of Config.PreRate and PreBurst: registration attempts a
// second per address and replica, and the burst, beyond which an address
// is refused before its request is verified. A person registers once.
// PreNetRate and PreNetBurst, per IPv6 /48, default to preNetFactor times
// those.
const (
	defaultPreRate  = 5
	defaultPreBurst = 20
	preNetFactor    = 10
	maxPreAddr      = 100_000
)

// prelimit is the in-memory limit in front of the shared one: it keeps a
// flood of bogus registrations from one address from costing more than
// preRate signature checks a second, and it writes nothing. Like the
// shared limit it has two tiers: per address (kez.ClientBlock: an IPv4
// address, an IPv6 /64) and per IPv6 /48 (kez.ClientNet), so that a /48
// does not get preRate checks a second for each of its 65,536 /64s.
type prelimit struct {
	addrs, nets *buckets
}

func newPrelimit(cfg Config) *prelimit {
	perSecond, burst := cfg.PreRate, cfg.PreBurst
	if perSecond <= 0 {
		perSecond = defaultPreRate
	}
	if burst <= 0 {
		burst = defaultPreBurst
	}
	netPerSecond, netBurst := cfg.PreNetRate, cfg.PreNetBurst
	if netPerSecond <= 0 {
		netPerSecond = preNetFactor * perSecond
	}
	if netBurst <= 0 {
		netBurst = preNetFactor * burst
	}
	return &prelimit{addrs: newBuckets(perSecond, burst), nets: newBuckets(netPerSecond, netBurst)}
}

// allow returns an error wrapping kez.ErrRateLimited if addr may not make
// one more attempt now (kez.ErrNetRateLimited if its IPv6 /48 may not).
// An attempt its address is refused is not counted against its /48, as
// in the shared limit.
func (p *prelimit) allow(addr netip.Addr) error {
	if !p.addrs.allow(kez.ClientBlock(addr)) {
		return fmt.Errorf("%w: too many registration attempts from this address", kez.ErrRateLimited)
	}
	if n := kez.ClientNet(addr); n.IsValid() && !p.nets.allow(n.Addr()) {
		return kez.ErrNetRateLimited
	}
	return nil
}

// buckets is one tier of the prelimit: a token bucket per key.
type buckets struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[netip.Addr]*rate.Limiter
}

func newBuckets(perSecond float64, burst int) *buckets {
	return &buckets{rate: rate.Limit(perSecond), burst: burst, m: map[netip.Addr]*rate.Limiter{}}
}

// allow reports whether key may make one more attempt now.
func (b *buckets) allow(key netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.m[key]
	if l == nil {
		if len(b.m) >= maxPreAddr {
			clear(b.m)
		}
		l = rate.NewLimiter(b.rate, b.burst)
		b.m[key] = l
	}
	return l.Allow()
}
