package sigserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kez.lat/kez"
	"kez.lat/kez/buildinfo"
	"kez.lat/kez/health"
	"kez.lat/kez/integrity"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
)

// Sentinel errors of the sig-server, besides the sigchain and root ones.
var (
	// ErrNotRegistered: the chain's key has no handle on the home server,
	// and the server accepts chains of registered keys only.
	ErrNotRegistered = errors.New("key has no registered handle")
	// ErrChainFull: the chain holds its maximum number of events.
	ErrChainFull = errors.New("sigchain has reached its maximum number of events")
)

// MaxBodySize bounds POST bodies: one event in wire form.
const MaxBodySize = sigchain.MaxEventSize

// Store is the sigchain store; see streams.Sigchains.
type Store interface {
	// Tail returns the chain's last event and the store sequence an
	// append after it must expect; the zero Event and 0 for an empty chain.
	Tail(ctx context.Context, key kez.PublicKey) (sigchain.Event, uint64, error)
	// Append stores ev if the chain's tail is still at expect, else
	// returns streams.ErrSigchainConflict.
	Append(ctx context.Context, ev sigchain.Event, expect uint64) (uint64, error)
	// Read returns the wire forms of the events with seqno >= since.
	Read(ctx context.Context, key kez.PublicKey, since, limit uint64) ([]json.RawMessage, bool, error)
}

// Limiter limits appends per chain; see streams.SigchainLimiter.
type Limiter interface {
	// Allow records one append and returns kez.ErrRateLimited over the limit.
	Allow(ctx context.Context, key kez.PublicKey) error
}

// KeyIndex finds the handle of a key (keyIndex reads the registry
// stream's key claims).
type KeyIndex interface {
	// GetByKey returns the record of key's handle, or kez.ErrNotFound.
	GetByKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error)
}

var (
	_ Store    = (*streams.Sigchains)(nil)
	_ Limiter  = (*streams.SigchainLimiter)(nil)
	_ KeyIndex = (*keyIndex)(nil)
)

// HandlerConfig is what the HTTP API needs.
type HandlerConfig struct {
	Store Store
	// Limiter limits appends per chain; nil means no rate limit.
	Limiter Limiter
	// Registered, if set, restricts appends to keys it knows
	// ([ErrNotRegistered] otherwise).
	Registered KeyIndex
	// MaxEvents is the most events a chain may hold.
	MaxEvents uint64
	// CtimeSkew is how far ahead of Now an event's ctime may be.
	CtimeSkew time.Duration
	// TrustProxy takes the client address (logged) from X-Forwarded-For.
	TrustProxy bool
	// Ready, if set, answers /v1/readyz (and /v1/livez is served).
	Ready *health.Checker
	// Checks are the health checks /v1/healthz runs, by name.
	Checks map[string]func(context.Context) error
	// Integrity, if set, refuses appends while it returns an error (one
	// wrapping kez.ErrLogDamaged while the sigchain stream is damaged).
	Integrity func() error
	// IntegrityStatus, if set, is shown by /v1/healthz, which it turns red
	// when not OK.
	IntegrityStatus func() integrity.Status
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Logger receives appends, failed health checks and internal errors
	// (discarded if nil).
	Logger *slog.Logger
}

// errorTable maps the sig-server's errors, most specific first, then the
// root ones.
var errorTable = append([]kez.ErrorCode{
	{Err: sigchain.ErrWrongChain, Status: http.StatusBadRequest, Code: "wrong_chain"},
	{Err: sigchain.ErrBadCtime, Status: http.StatusBadRequest, Code: "bad_ctime"},
	{Err: sigchain.ErrMalformed, Status: http.StatusBadRequest, Code: "malformed_event"},
	{Err: sigchain.ErrWrongSeqno, Status: http.StatusConflict, Code: "wrong_seqno"},
	{Err: sigchain.ErrWrongPrev, Status: http.StatusConflict, Code: "wrong_prev"},
	{Err: streams.ErrSigchainConflict, Status: http.StatusConflict, Code: "conflict"},
	{Err: ErrNotRegistered, Status: http.StatusForbidden, Code: "not_registered"},
	{Err: ErrChainFull, Status: http.StatusTooManyRequests, Code: "chain_full"},
}, kez.ErrorCodes()...)

type server struct {
	cfg     HandlerConfig
	errs    web.Errors
	appends *prometheus.CounterVec
}

// NewHandler returns the sig-server's HTTP API, with its metrics on reg
// and served at /metrics.
func NewHandler(cfg HandlerConfig, reg *prometheus.Registry) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv := &server{
		cfg:  cfg,
		errs: web.Errors{Table: errorTable, Logger: cfg.Logger},
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_sigchain_appends_total", Help: "Sigchain append attempts by result (created, exists, or the error code).",
		}, []string{"result"}),
	}
	reg.MustRegister(srv.appends)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", srv.handleHealthz)
	mux.HandleFunc("GET /v1/livez", health.ServeLive)
	if cfg.Ready != nil {
		mux.HandleFunc("GET /v1/readyz", cfg.Ready.ServeReady)
	}
	mux.HandleFunc("GET "+kez.SigchainPath+"{hex}", srv.handleChain)
	mux.HandleFunc("POST "+kez.SigchainPath+"{hex}/events", srv.handleAppend)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusNotFound, kez.ErrorBody{Error: "no such route", Code: "not_found"})
	})
	return web.NewMetrics(reg).Wrap(mux)
}

func (srv *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type body struct {
		Status    string            `json:"status"`
		Checks    map[string]string `json:"checks"`
		Integrity *integrity.Status `json:"integrity,omitempty"`
		Build     buildinfo.Info    `json:"build"`
	}
	b := body{Status: "ok", Checks: map[string]string{}, Build: buildinfo.Get()}
	status := http.StatusOK
	if srv.cfg.IntegrityStatus != nil {
		st := srv.cfg.IntegrityStatus()
		b.Integrity = &st
		if !st.OK {
			b.Status, status = "unavailable", http.StatusServiceUnavailable
		}
	}
	for name, check := range srv.cfg.Checks {
		b.Checks[name] = "ok"
		if err := check(ctx); err != nil {
			// The detail goes to the log, not to an unauthenticated caller.
			srv.cfg.Logger.Warn("health check failed", "check", name, "err", err)
			b.Checks[name] = "failing"
			b.Status, status = "unavailable", http.StatusServiceUnavailable
		}
	}
	web.WriteJSON(w, status, b)
}

// chainKey parses the {hex} of the URL.
func chainKey(r *http.Request) (kez.PublicKey, error) {
	return kez.ParsePublicKeyHex(r.PathValue("hex"))
}

func (srv *server) handleChain(w http.ResponseWriter, r *http.Request) {
	key, err := chainKey(r)
	if err != nil {
		srv.errs.Write(w, r, err)
		return
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			srv.errs.Write(w, r, errBadSince)
			return
		}
	}
	limit := uint64(MaxPage)
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			srv.errs.Write(w, r, errBadLimit)
			return
		}
		limit = min(n, MaxPage)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	events, more, err := srv.cfg.Store.Read(ctx, key, since, limit)
	if err != nil {
		srv.errs.Write(w, r, err)
		return
	}
	// Chains change with every append: caches must ask again.
	w.Header().Set("Cache-Control", "no-cache")
	if more {
		w.Header().Set(kez.NextPageHeader, strconv.FormatUint(max(since, 1)+uint64(len(events)), 10))
	}
	writeEvents(w, events)
}

// writeEvents writes events as a JSON array, one event at a time: each is
// stored compact, so the answer is never built whole in memory.
func writeEvents(w http.ResponseWriter, events []json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(e)
	}
	bw.WriteString("]\n")
	bw.Flush()
}

// MaxPage is sigchain.MaxPage, the most events one GET of a chain answers.
const MaxPage = sigchain.MaxPage

var errBadLimit = fmt.Errorf("%w: limit must be a positive integer (events per page, at most %d)", kez.ErrInvalidRequest, MaxPage)

var errBadSince = fmt.Errorf("%w: since must be a non-negative integer (the first seqno wanted)", kez.ErrInvalidRequest)

func (srv *server) handleAppend(w http.ResponseWriter, r *http.Request) {
	ev, created, err := srv.append(w, r)
	if err != nil {
		srv.appends.WithLabelValues(srv.errs.Code(err)).Inc()
		srv.errs.Write(w, r, err)
		return
	}
	status, result := http.StatusOK, "exists"
	if created {
		status, result = http.StatusCreated, "created"
		srv.cfg.Logger.Info("sigchain event appended", "chain", ev.Chain().String(), "seqno", ev.Seqno(),
			"type", ev.Type(), "client", web.ClientAddr(r, srv.cfg.TrustProxy).String())
	}
	srv.appends.WithLabelValues(result).Inc()
	w.Header().Set("Location", kez.SigchainPath+ev.Chain().Hex()+"?since="+strconv.FormatUint(ev.Seqno(), 10))
	web.WriteJSON(w, status, ev)
}

// append checks and stores the posted event. It reports created=false
// when the event was already the chain's tail. The checks that need no
// I/O come first, and the rate limit last, so that only the owner's valid
// events count against the owner's quota.
func (srv *server) append(w http.ResponseWriter, r *http.Request) (ev sigchain.Event, created bool, err error) {
	key, err := chainKey(r)
	if err != nil {
		return ev, false, err
	}
	body, err := web.ReadBody(w, r, MaxBodySize)
	if err != nil {
		return ev, false, err
	}
	if ev, err = sigchain.ParseEvent(body); err != nil {
		return ev, false, err
	}
	// The event must name the chain of the URL (ErrWrongChain) and be
	// signed by that key before anything is looked up for it.
	if err := ev.Verify(key); err != nil {
		return ev, false, err
	}
	if srv.cfg.Integrity != nil {
		if err := srv.cfg.Integrity(); err != nil {
			return ev, false, err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if srv.cfg.Registered != nil {
		if _, err := srv.cfg.Registered.GetByKey(ctx, key); errors.Is(err, kez.ErrNotFound) {
			return ev, false, ErrNotRegistered
		} else if err != nil {
			return ev, false, unavailable("registry look-up", err)
		}
	}
	tail, expect, err := srv.cfg.Store.Tail(ctx, key)
	if err != nil {
		return ev, false, err
	}
	var last *sigchain.Event
	if !tail.IsZero() {
		last = &tail
		if tail.Hash() == ev.Hash() {
			return tail, false, nil // a retry of a stored event
		}
	}
	if err := sigchain.VerifyAppend(key, last, ev); err != nil {
		return ev, false, err
	}
	if err := sigchain.CheckCtime(ev, srv.cfg.Now(), srv.cfg.CtimeSkew); err != nil {
		return ev, false, err
	}
	if ev.Seqno() > srv.cfg.MaxEvents {
		return ev, false, ErrChainFull
	}
	if srv.cfg.Limiter != nil {
		if err := srv.cfg.Limiter.Allow(ctx, key); err != nil {
			return ev, false, err
		}
	}
	if _, err := srv.cfg.Store.Append(ctx, ev, expect); err != nil {
		return ev, false, err
	}
	return ev, true, nil
}

// unavailable wraps a dependency failure as kez.ErrUnavailable, unless it
// already is one.
func unavailable(what string, err error) error {
	if errors.Is(err, kez.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", kez.ErrUnavailable, what, err)
}
