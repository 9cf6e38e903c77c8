package callout

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
)

// ErrThrottled: the client failed too often lately; its sign-ins are
// refused before any signature is checked. Which tier refused it (the
// address and key, the address, the IPv6 /48) is in the error's text and
// in the reason it is counted under.
var ErrThrottled = errors.New("sign-ins refused for a while after repeated failures")

// The tiers of ErrThrottled.
var (
	errKeyThrottled  = fmt.Errorf("%w (this key from this address)", ErrThrottled)
	errHostThrottled = fmt.Errorf("%w (this address)", ErrThrottled)
	errNetThrottled  = fmt.Errorf("%w (this IPv6 /48)", ErrThrottled)
)

// Admission limits. Failed sign-ins are counted in three tiers, each in
// windows of hostWindow; a tier's bucket that reaches its budget is
// refused for hostBlock without further checks:
//
//   - keyFailures per client address and claimed key: a client that
//     keeps failing (a wrong key, a forger) is refused with that key, and
//     only with it. Its neighbours behind the same NAT, or in the same
//     /64, who sign in with their own keys are not punished for it.
//   - hostFailures per client address (an IPv4 address, an IPv6 /64;
//     kez.ClientBlock), whatever the key: rotating keys does not escape
//     the throttle. Five times the key budget, so that a few broken
//     clients behind one NAT do not lock the others out; a neighbour
//     failing on purpose with many keys still can, for a minute.
//   - netFailures per IPv6 /48, the prefix a site or a hosting customer
//     is routed: a /48 holds 65,536 /64s, and without this tier it made
//     ~18,000 failed sign-ins a second, one /64 at a time. Now ~3 a
//     second at most (200 per 70 s), the same as two of its /64s.
//     There is no wider tier for IPv4: a /24 is no one network (carrier
//     NATs and shared hosting put unrelated clients side by side in one),
//     IPv4 addresses are scarce, and one IPv4 address is already bounded
//     by the address tier.
//
// Only failures count (bad or missing signatures, unregistered keys,
// malformed requests), not sign-ins refused by a throttle, by the
// connection cap or for a registry that did not answer. A key found
// unregistered is refused for unknownFor without asking the registry
// again. Denials are logged once per reason per logEvery, with their
// count.
const (
	keyFailures  = 20
	hostFailures = 100
	netFailures  = 200
	hostWindow   = 10 * time.Second
	hostBlock    = time.Minute
	unknownFor   = 2 * time.Second
	logEvery     = 10 * time.Second
	maxTracked   = 100_000
	// floodDenials: above this many denials in a second, a replica
	// stops answering denials (Service.silent).
	floodDenials = 20
)

// client is what a sign-in's failures are counted against: its address
// (kez.ClientBlock's, as text; "" when the broker gave none), its IPv6
// /48 (invalid for IPv4) and the key it claims (zero when it claimed
// none that parses).
type client struct {
	host string
	net  netip.Prefix
	key  kez.PublicKey
}

// newClient returns the client of a sign-in from host (as the broker
// reports it) claiming key.
func newClient(host string, key kez.PublicKey) client {
	c := client{host: host, key: key}
	if addr, err := netip.ParseAddr(host); err == nil {
		// An IPv6 client counts by its /64 and its /48, as
		// registrations do: rotating through its own block does not
		// escape the throttle.
		c.host = kez.ClientBlock(addr).String()
		c.net = kez.ClientNet(addr)
	}
	return c
}

// hostKey is a bucket of the key tier.
type hostKey struct {
	host string
	key  kez.PublicKey
}

// admission keeps a sign-in flood cheap: it refuses clients that keep
// failing before any cryptography, remembers unregistered keys for a
// moment so that they cost no registry round trip, counts denials by
// reason, and logs them sampled rather than one line each.
type admission struct {
	now    func() time.Time
	logger *slog.Logger
	denied *prometheus.CounterVec

	mu      sync.Mutex
	second  time.Time // start of the current second of denials
	inSec   int       // denials in it
	lastSec int       // denials in the second before, if it was the one just before
	keys    *strikes[hostKey]
	hosts   *strikes[string]
	nets    *strikes[netip.Prefix]
	unknown map[kez.PublicKey]time.Time
	samples map[string]*sample
}

// strikes is one tier of the throttle: the failures of each of its
// buckets, counted in windows of hostWindow; a bucket that fails budget
// times in a window is refused for hostBlock.
type strikes[K comparable] struct {
	budget int
	m      map[K]*strikeState
}

type strikeState struct {
	since   time.Time // start of the current window
	fails   int
	blocked time.Time // refused until
}

func newStrikes[K comparable](budget int) *strikes[K] {
	return &strikes[K]{budget: budget, m: map[K]*strikeState{}}
}

// refused reports whether bucket k is refused at now.
func (s *strikes[K]) refused(k K, now time.Time) bool {
	b := s.m[k]
	return b != nil && now.Before(b.blocked)
}

// fail counts a failure of bucket k at now.
func (s *strikes[K]) fail(k K, now time.Time) {
	if len(s.m) >= maxTracked {
		clear(s.m)
	}
	b := s.m[k]
	if b == nil || now.Sub(b.since) > hostWindow {
		b = &strikeState{since: now}
		s.m[k] = b
	}
	if b.fails++; b.fails >= s.budget {
		b.blocked, b.fails, b.since = now.Add(hostBlock), 0, now
	}
}

// sample is one reason's denials since it was last logged (at since).
type sample struct {
	count int
	since time.Time
	last  string
}

func newAdmission(now func() time.Time, logger *slog.Logger) *admission {
	return &admission{
		now: now, logger: logger,
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_callout_denied_total", Help: "Refused sign-ins by reason.",
		}, []string{"reason"}),
		keys: newStrikes[hostKey](keyFailures), hosts: newStrikes[string](hostFailures),
		nets:    newStrikes[netip.Prefix](netFailures),
		unknown: map[kez.PublicKey]time.Time{}, samples: map[string]*sample{},
	}
}

// reason names err for metrics and logs.
func reason(err error) string {
	switch {
	case errors.Is(err, errKeyThrottled):
		return "throttled_key"
	case errors.Is(err, errNetThrottled):
		return "throttled_48"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrNoSignature):
		return "no_signature"
	case errors.Is(err, kez.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ErrUnregistered):
		return "unregistered"
	case errors.Is(err, ErrTooManyConnections):
		return "too_many_connections"
	case errors.Is(err, ErrLookup):
		return "registry_unavailable"
	}
	return "other"
}

// throttled returns an error wrapping ErrThrottled if c is being
// refused, naming the widest tier that refuses it; nil if not.
func (a *admission) throttled(c client) error {
	if c.host == "" {
		return nil
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case c.net.IsValid() && a.nets.refused(c.net, now):
		return errNetThrottled
	case a.hosts.refused(c.host, now):
		return errHostThrottled
	case a.keys.refused(hostKey{c.host, c.key}, now):
		return errKeyThrottled
	}
	return nil
}

// flooding reports whether more than floodDenials sign-ins were denied
// in the current or the previous second.
func (a *admission) flooding() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.now().Sub(a.second) >= 2*time.Second {
		return false
	}
	return a.inSec > floodDenials || a.lastSec > floodDenials
}

// unregistered reports whether key was found unregistered a moment ago.
func (a *admission) unregistered(key kez.PublicKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.unknown[key]
	return ok && a.now().Before(until)
}

// deny records a refused sign-in of c for err.
func (a *admission) deny(c client, err error) {
	r := reason(err)
	a.denied.WithLabelValues(r).Inc()
	now := a.now()
	a.mu.Lock()
	if d := now.Sub(a.second); d >= time.Second {
		a.lastSec = 0
		if d < 2*time.Second {
			a.lastSec = a.inSec
		}
		a.second, a.inSec = now, 0
	}
	a.inSec++
	if len(a.unknown) >= maxTracked {
		clear(a.unknown)
	}
	if errors.Is(err, ErrUnregistered) {
		a.unknown[c.key] = now.Add(unknownFor)
	}
	if c.host != "" && !errors.Is(err, ErrThrottled) && r != "too_many_connections" && r != "registry_unavailable" {
		a.keys.fail(hostKey{c.host, c.key}, now)
		a.hosts.fail(c.host, now)
		if c.net.IsValid() {
			a.nets.fail(c.net, now)
		}
	}
	s := a.samples[r]
	if s == nil { // never logged: the first denial is logged at once
		s = &sample{since: now.Add(-logEvery)}
		a.samples[r] = s
	}
	s.count++
	s.last = err.Error()
	var logged *sample
	if now.Sub(s.since) >= logEvery {
		logged = &sample{count: s.count, since: s.since, last: s.last}
		s.count, s.since = 0, now
	}
	a.mu.Unlock()
	if logged != nil {
		a.logger.Info("connections denied", "reason", r, "count", logged.count, "last", logged.last)
	}
}
