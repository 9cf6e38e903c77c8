// Package web holds the HTTP plumbing the kez servers share: JSON answers,
// the one error boundary that maps domain errors to a status and a code,
// size-limited bodies, client addresses and request metrics.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kez.lat/kez"
	"kez.lat/kez/buildinfo"
)

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	WriteJSONType(w, status, "application/json", v)
}

// WriteJSONType answers v as JSON with status and content type ctype.
func WriteJSONType(w http.ResponseWriter, status int, ctype string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal error","code":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// RetryAfterUnavailable is the Retry-After of a 503 answer, in seconds:
// a broker restart or a leader election is over in seconds; a full store
// needs an operator, and a client that retries every few seconds costs
// nothing meanwhile.
const RetryAfterUnavailable = "5"

// Errors is the error boundary of one server: handlers call Write with any
// error; one mapped by Table ([kez.ErrorCodes] and the server's own codes)
// is answered with its status, code and message, any other is logged and
// answered "internal error", never with its text.
type Errors struct {
	Table  []kez.ErrorCode
	Logger *slog.Logger
}

// Code returns the code err is answered with ("internal" if unmapped),
// for metrics labels.
func (e Errors) Code(err error) string {
	for _, m := range e.Table {
		if errors.Is(err, m.Err) {
			return m.Code
		}
	}
	return "internal"
}

// Write answers err.
func (e Errors) Write(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range e.Table {
		if errors.Is(err, m.Err) {
			switch {
			case m.Code == "rate_limited": // not chain_full: waiting will not help there
				w.Header().Set("Retry-After", "60")
			case m.Status == http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", RetryAfterUnavailable)
			}
			msg := err.Error()
			if m.Status >= 500 {
				// The cause is a broker detail: log it, answer the sentinel.
				e.Logger.Warn("unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
				msg = m.Err.Error()
			}
			WriteJSON(w, m.Status, kez.ErrorBody{Error: msg, Code: m.Code})
			return
		}
	}
	e.Logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	WriteJSON(w, http.StatusInternalServerError, kez.ErrorBody{Error: "internal error", Code: "internal"})
}

// ReadBody reads the request body, refusing more than limit bytes with
// kez.ErrTooLarge.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("%w: body over %d bytes", kez.ErrTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %v", kez.ErrInvalidRequest, err)
	}
	return b, nil
}

// ClientAddr returns the address of the client: the TCP peer, or, when
// trustProxy is set (the server sits behind a reverse proxy that appends
// to X-Forwarded-For), the last address of that header.
func ClientAddr(r *http.Request, trustProxy bool) netip.Addr {
	if trustProxy {
		xff := r.Header.Values("X-Forwarded-For")
		if len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a
}

// NewRegistry returns a server's own Prometheus registry, with the Go and
// process collectors and kez_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfoGauge(buildinfo.Get()))
	return reg
}

// Metrics instruments handlers with request counts and durations per route
// pattern, registered on the server's own registry.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics of a server on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_http_requests_total", Help: "HTTP requests by route pattern and status.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kez_http_request_duration_seconds", Help: "HTTP request duration by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Wrap instruments mux: every request is counted under the pattern that
// matched it (or "unmatched").
func (m *Metrics) Wrap(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		_, pattern := mux.Handler(r)
		mux.ServeHTTP(sw, r)
		if pattern == "" {
			pattern = "unmatched"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		m.requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
	})
}

// Healthcheck asks the health endpoint url (a server's /v1/readyz) and
// returns nil once it answers 200: the `healthcheck` subcommand of the
// servers, run by container health checks (our images have no shell or
// curl) and by systemd after start; with live, the liveness endpoint
// beside url (LiveURL). Each attempt has 3 seconds; with wait > 0 it
// asks again every second until wait has passed.
func Healthcheck(ctx context.Context, url string, live bool, wait time.Duration) error {
	if live {
		var err error
		if url, err = LiveURL(url); err != nil {
			return err
		}
	}
	end := time.Now().Add(wait)
	for {
		err := healthcheck(ctx, url)
		if err == nil || time.Now().After(end) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

func healthcheck(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("unhealthy: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// LiveURL returns the liveness endpoint beside the health endpoint
// endpoint: its last path element replaced by livez (/v1/readyz becomes
// /v1/livez, a relay's /readyz becomes /livez). Every server of ours
// serves livez next to readyz and healthz.
func LiveURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	u.Path = path.Join(path.Dir(u.Path), "livez")
	u.RawPath = ""
	return u.String(), nil
}
