package registry

import (
	"net/netip"
	"sync"

	"golang.org/x/time/rate"

	"kez.lat/kez"
)

// The defaults of Config.PreRate and PreBurst: registration attempts a
// second per address and replica, and the burst, beyond which an address
// is refused before its request is verified. A person registers once.
const (
	defaultPreRate  = 5
	defaultPreBurst = 20
	maxPreAddr      = 100_000
)

// prelimit is the in-memory limit in front of the shared one: it keeps a
// flood of bogus registrations from one address from costing more than
// preRate signature checks a second, and it writes nothing.
type prelimit struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[netip.Addr]*rate.Limiter
}

func newPrelimit(perSecond float64, burst int) *prelimit {
	if perSecond <= 0 {
		perSecond = defaultPreRate
	}
	if burst <= 0 {
		burst = defaultPreBurst
	}
	return &prelimit{rate: rate.Limit(perSecond), burst: burst, m: map[netip.Addr]*rate.Limiter{}}
}

// allow reports whether addr may make one more attempt now. IPv6
// addresses count per /64, as the shared limit does.
func (p *prelimit) allow(addr netip.Addr) bool {
	addr = kez.ClientBlock(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.m[addr]
	if l == nil {
		if len(p.m) >= maxPreAddr {
			clear(p.m)
		}
		l = rate.NewLimiter(p.rate, p.burst)
		p.m[addr] = l
	}
	return l.Allow()
}
