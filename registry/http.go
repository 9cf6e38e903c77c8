package registry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kez.lat/kez"
	"kez.lat/kez/buildinfo"
	"kez.lat/kez/integrity"
	"kez.lat/kez/web"
)

// MaxBodySize bounds request bodies; a registration is a few hundred bytes.
const MaxBodySize = 4 << 10

// HTTPConfig is what the HTTP API needs beyond the registry itself.
type HTTPConfig struct {
	// SigchainURL is the public base URL of the sig-server
	// (https://sig.kez.lat); records link to [kez.SigchainURL] under it.
	SigchainURL string
	// NATSURL is the public URL clients connect to (nats://nats.kez.lat:4222).
	NATSURL string
	// Inbox returns a key's inbox subject.
	Inbox func(kez.PublicKey) string
	// TrustProxy takes the client address from X-Forwarded-For (set it
	// only behind a reverse proxy that sets that header).
	TrustProxy bool
	// Extra routes mounted on the same mux (WebFinger), pattern -> handler.
	Extra map[string]http.Handler
	// NATSConnected reports whether the broker connection is up.
	NATSConnected func() bool
	// Relays are the multiaddrs (with /p2p/<id>) of the kez-relay services
	// clients may reserve on, listed in every record.
	Relays []string
	// Integrity, if set, reports the append-only streams' condition for
	// /v1/healthz: a damaged one turns it red.
	Integrity func() integrity.Status
}

type server struct {
	svc    *Service
	cfg    HTTPConfig
	errs   web.Errors
	logger *slog.Logger
	regs   *prometheus.CounterVec
}

// Handler returns the home server's HTTP API, with its metrics on reg and
// served at /metrics. From now on registrations wait for the skeleton
// migration that Run starts (see awaitSkeletons): a server listens before
// it Runs the registry, and one arriving in between must not get past.
func (s *Service) Handler(cfg HTTPConfig, reg *prometheus.Registry) http.Handler {
	s.gated.Store(true)
	srv := &server{
		svc: s, cfg: cfg, logger: s.logger,
		errs: web.Errors{Table: kez.ErrorCodes(), Logger: s.logger},
		regs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_registrations_total", Help: "Registration attempts by result code.",
		}, []string{"result"}),
	}
	reg.MustRegister(srv.regs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kez_registry_applied_sequence", Help: "Last registry sequence this replica projected.",
		}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(s.applied) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kez_registry_cached_handles", Help: "Handles in this replica's look-up cache.",
		}, func() float64 { return float64(s.cache.Len()) }),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", srv.handleHealthz)
	mux.HandleFunc("GET /v1/u/{handle}", srv.handleUser)
	mux.HandleFunc("GET /v1/k/{primary}", srv.handleKey)
	mux.HandleFunc("POST /v1/register", srv.handleRegister)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for pattern, h := range cfg.Extra {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusNotFound, kez.ErrorBody{Error: "no such route", Code: "not_found"})
	})
	return web.NewMetrics(reg).Wrap(mux)
}

func (srv *server) record(rec kez.HandleRecord) kez.Record {
	return kez.Record{
		Handle:          rec.Handle.String(),
		Primary:         rec.Primary.String(),
		SigchainURL:     kez.SigchainURL(srv.cfg.SigchainURL, rec.Primary),
		NATS:            kez.RecordNATS{URL: srv.cfg.NATSURL, Inbox: srv.cfg.Inbox(rec.Primary)},
		RegisteredAt:    rec.RegisteredAt,
		RegistrationSig: rec.RegistrationSig,
		Relays:          srv.cfg.Relays,
	}
}

func (srv *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type body struct {
		Status     string            `json:"status"`
		NATS       bool              `json:"nats_connected"`
		Projection *Health           `json:"projection,omitempty"`
		Integrity  *integrity.Status `json:"integrity,omitempty"`
		Error      string            `json:"error,omitempty"`
		Build      buildinfo.Info    `json:"build"`
	}
	b := body{Status: "ok", NATS: srv.cfg.NATSConnected == nil || srv.cfg.NATSConnected(), Build: buildinfo.Get()}
	intact := true
	if srv.cfg.Integrity != nil {
		st := srv.cfg.Integrity()
		b.Integrity, intact = &st, st.OK
	}
	h, err := srv.svc.Health(ctx)
	if err != nil {
		b.Error = "registry log unreachable"
	} else {
		b.Projection = &h
	}
	status := http.StatusOK
	if !b.NATS || err != nil || !h.CaughtUp || !intact {
		b.Status, status = "unavailable", http.StatusServiceUnavailable
	}
	web.WriteJSON(w, status, b)
}

func (srv *server) handleUser(w http.ResponseWriter, r *http.Request) {
	h, err := kez.ParseHandle(r.PathValue("handle"), srv.svc.Domain())
	if err != nil {
		srv.errs.Write(w, r, err)
		return
	}
	rec, err := srv.svc.Lookup(r.Context(), h)
	if err != nil {
		srv.errs.Write(w, r, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, srv.record(rec))
}

func (srv *server) handleKey(w http.ResponseWriter, r *http.Request) {
	key, err := kez.ParsePublicKey(r.PathValue("primary"))
	if err != nil {
		// Accept the bare hex form too.
		if key, err = kez.ParsePublicKeyHex(r.PathValue("primary")); err != nil {
			srv.errs.Write(w, r, err)
			return
		}
	}
	rec, err := srv.svc.LookupKey(r.Context(), key)
	if err != nil {
		srv.errs.Write(w, r, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, srv.record(rec))
}

func (srv *server) handleRegister(w http.ResponseWriter, r *http.Request) {
	rec, err := srv.register(w, r)
	if err != nil {
		srv.regs.WithLabelValues(registerResult(srv.errs.Code(err), err)).Inc()
		srv.errs.Write(w, r, err)
		return
	}
	srv.regs.WithLabelValues("created").Inc()
	srv.logger.Info("registered", "handle", rec.Handle.String(), "primary", rec.Primary.String(), "seq", rec.Seq)
	w.Header().Set("Location", "/v1/u/"+rec.Handle.Local())
	web.WriteJSON(w, http.StatusCreated, srv.record(rec))
}

// registerResult is the kez_registrations_total label of a refused
// registration: its answer's code, except that a refusal of the client's
// IPv6 /48 (answered rate_limited, as any rate limit, for clients) is
// counted apart, as rate_limited_48, to tell a /48 at its budget from
// addresses at theirs.
func registerResult(code string, err error) string {
	if errors.Is(err, kez.ErrNetRateLimited) {
		return "rate_limited_48"
	}
	return code
}

func (srv *server) register(w http.ResponseWriter, r *http.Request) (kez.HandleRecord, error) {
	body, err := web.ReadBody(w, r, MaxBodySize)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	req, err := kez.ParseRegistrationRequest(body)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	return srv.svc.Register(ctx, req, web.ClientAddr(r, srv.cfg.TrustProxy))
}
