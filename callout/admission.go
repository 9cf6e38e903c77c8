package callout

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
)

// ErrThrottled: the client's address failed too often lately; its
// sign-ins are refused before any signature is checked.
var ErrThrottled = errors.New("address refused for a while after repeated failures")

// Admission limits. A client address that fails hostFailures sign-ins
// within hostWindow is refused for hostBlock without further checks; a key
// found unregistered is refused for unknownFor without asking the
// registry again. Denials are logged once per reason per logEvery, with
// their count.
const (
	hostFailures = 20
	hostWindow   = 10 * time.Second
	hostBlock    = time.Minute
	unknownFor   = 2 * time.Second
	logEvery     = 10 * time.Second
	maxTracked   = 100_000
	// floodDenials: above this many denials in a second, a replica
	// stops answering denials (Service.silent).
	floodDenials = 20
)

// admission keeps a sign-in flood cheap: it refuses addresses that keep
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
	hosts   map[string]*hostState
	unknown map[kez.PublicKey]time.Time
	samples map[string]*sample
}

type hostState struct {
	since   time.Time // start of the current window
	fails   int
	blocked time.Time // refused until
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
		hosts: map[string]*hostState{}, unknown: map[kez.PublicKey]time.Time{}, samples: map[string]*sample{},
	}
}

// reason names err for metrics and logs.
func reason(err error) string {
	switch {
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

// throttled reports whether host is being refused.
func (a *admission) throttled(host string) bool {
	if host == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[host]
	return h != nil && a.now().Before(h.blocked)
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

// deny records a refused sign-in from host for err.
func (a *admission) deny(host string, key kez.PublicKey, err error) {
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
	if len(a.hosts) >= maxTracked {
		clear(a.hosts)
	}
	if len(a.unknown) >= maxTracked {
		clear(a.unknown)
	}
	if errors.Is(err, ErrUnregistered) {
		a.unknown[key] = now.Add(unknownFor)
	}
	if host != "" && r != "throttled" && r != "too_many_connections" && r != "registry_unavailable" {
		h := a.hosts[host]
		if h == nil || now.Sub(h.since) > hostWindow {
			h = &hostState{since: now}
			a.hosts[host] = h
		}
		if h.fails++; h.fails >= hostFailures {
			h.blocked, h.fails, h.since = now.Add(hostBlock), 0, now
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
