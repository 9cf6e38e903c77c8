// Package health answers whether a server lives and whether it is ready:
// liveness (the process serves HTTP) apart from readiness (every path a
// request takes works), the failing checks named in the JSON and one
// Prometheus gauge per check.
package health

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez/buildinfo"
	"kez.lat/kez/web"
)

// Check is one readiness check: Fn returns nil when the path it checks
// works. Its error is shown to callers of the readiness endpoint, so it
// must say what is wrong in the server's own words and hold no secret.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Defaults of [Config].
const (
	// DefaultTimeout bounds each check, so that a broker that answers
	// nothing turns readiness red within it instead of hanging the probe.
	DefaultTimeout = 1500 * time.Millisecond
	// DefaultMaxAge is how long a result is reused: probes from several
	// load balancers and compose do not multiply the checks' writes.
	DefaultMaxAge = time.Second
	// DefaultInterval is how often Run refreshes the gauges.
	DefaultInterval = 10 * time.Second
)

// Config tunes a [Checker]; zero fields take the defaults.
type Config struct {
	Timeout  time.Duration
	MaxAge   time.Duration
	Interval time.Duration
	Now      func() time.Time
}

// Report is the readiness JSON.
type Report struct {
	Status string `json:"status"` // "ok" or "unavailable"
	// Checks maps every check's name to "ok" or what is wrong.
	Checks map[string]string `json:"checks"`
	// Failing names the checks that fail, sorted.
	Failing []string `json:"failing,omitempty"`
	// Build is the build of the process that answers.
	Build buildinfo.Info `json:"build"`
}

// OK reports whether every check passed.
func (r Report) OK() bool { return len(r.Failing) == 0 }

// Checker runs the readiness checks of one server.
type Checker struct {
	cfg    Config
	checks []Check
	gauge  *prometheus.GaugeVec
	logger *slog.Logger
	shared Shared[Report]
}

// New returns a checker of checks, with the gauge kez_ready{check} on reg
// (1 ready, 0 not). Failing checks are logged to logger.
func New(cfg Config, checks []Check, reg prometheus.Registerer, logger *slog.Logger) *Checker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Checker{cfg: cfg, checks: checks, logger: logger, shared: Shared[Report]{MaxAge: cfg.MaxAge, Now: cfg.Now},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kez_ready", Help: "Readiness by check: 1 when the check passes, 0 when it fails.",
		}, []string{"check"}),
	}
	reg.MustRegister(c.gauge)
	return c
}

// Ready runs every check, concurrently and each within the timeout, and
// returns the report. A result younger than MaxAge is reused, and callers
// that arrive while a run is in flight share it.
func (c *Checker) Ready(ctx context.Context) Report {
	r, err := c.shared.Do(ctx, func(ctx context.Context) Report { return c.run(context.WithoutCancel(ctx)) })
	if err != nil {
		return Report{Status: "unavailable", Checks: map[string]string{}, Failing: []string{"timeout"}}
	}
	return r
}

func (c *Checker) run(ctx context.Context) Report {
	results := make([]error, len(c.checks))
	var wg sync.WaitGroup
	for i, ch := range c.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			defer cancel()
			results[i] = runOne(cctx, ch.Fn)
		})
	}
	wg.Wait()
	r := Report{Status: "ok", Checks: make(map[string]string, len(c.checks))}
	for i, ch := range c.checks {
		if err := results[i]; err != nil {
			r.Checks[ch.Name] = err.Error()
			r.Failing = append(r.Failing, ch.Name)
			c.gauge.WithLabelValues(ch.Name).Set(0)
			c.logger.Warn("not ready", "check", ch.Name, "err", err)
			continue
		}
		r.Checks[ch.Name] = "ok"
		c.gauge.WithLabelValues(ch.Name).Set(1)
	}
	if len(r.Failing) > 0 {
		r.Status = "unavailable"
		sort.Strings(r.Failing)
	}
	return r
}

// runOne runs fn, giving up at ctx's deadline even if fn does not.
func runOne(ctx context.Context, fn func(context.Context) error) error {
	res := make(chan error, 1)
	go func() { res <- fn(ctx) }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return errNoAnswer
	}
}

type timeoutError struct{}

func (timeoutError) Error() string { return "no answer in time" }

var errNoAnswer error = timeoutError{}

// Run refreshes the checks (and so the gauges) every Interval until ctx
// ends, so that the metrics tell the truth when nobody probes.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.Ready(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServeReady answers the readiness report: 200 when every check passes,
// else 503 (with Retry-After), the failing checks named.
func (c *Checker) ServeReady(w http.ResponseWriter, r *http.Request) {
	rep := c.Ready(r.Context())
	rep.Build = buildinfo.Get()
	if !rep.OK() {
		w.Header().Set("Retry-After", web.RetryAfterUnavailable)
		web.WriteJSON(w, http.StatusServiceUnavailable, rep)
		return
	}
	web.WriteJSON(w, http.StatusOK, rep)
}

// ServeLive answers 200 {"status":"ok", "build": ...}: the process serves HTTP. It
// checks nothing else, so that a supervisor restarts a process only when
// it is stuck, never because the broker is away.
func ServeLive(w http.ResponseWriter, _ *http.Request) {
	web.WriteJSON(w, http.StatusOK, struct {
		Status string         `json:"status"`
		Build  buildinfo.Info `json:"build"`
	}{"ok", buildinfo.Get()})
}
